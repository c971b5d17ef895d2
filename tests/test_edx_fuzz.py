"""Random valid Open edX events (polyfactory over Ralph's models) stay valid once treated."""

from __future__ import annotations

import json

import pytest
from polyfactory.factories.pydantic_factory import ModelFactory
from pydantic import ValidationError
from ralph.models.edx.enrollment.statements import EdxCourseEnrollmentActivated
from ralph.models.edx.navigational.statements import UISeqGoto
from ralph.models.edx.problem_interaction.statements import ProblemCheck, UIProblemCheck
from ralph.models.edx.server import Server
from ralph.models.edx.video.statements import UIPlayVideo, UISeekVideo

from pseudonym import Policy, anonymise

MODELS = [Server, UIPlayVideo, UISeekVideo, UIProblemCheck, ProblemCheck,
          EdxCourseEnrollmentActivated, UISeqGoto]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_random_valid_events_stay_valid(keys, model):
    factory = ModelFactory.create_factory(model)
    factory.seed_random(20260)
    policy = Policy.load("edx")
    checked = 0
    for _ in range(25):
        event = json.loads(factory.build().model_dump_json())
        try:
            model(**event)
        except ValidationError:
            continue
        out = anonymise(event, policy, keys=keys)
        model(**out)
        if len(event["username"]) >= 2:
            assert out["username"] != event["username"]
        assert out["agent"] == "" and out["accept_language"] == ""
        checked += 1
    assert checked >= 20
