"""url, date_shift, json, learner_id, ipv4_prefix, agent options, cross-format linkage."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from pseudonym import KeyRing, Policy, PolicyError, RecordError, anonymise
from pseudonym.actions.url import treat_url
from pseudonym.engine import compile_plan


def one_rule(path: str, action: str, options: dict | None = None, extra: list | None = None,
             domain: str = "d") -> Policy:
    return Policy.from_dict({"name": "t", "version": "1", "domain": domain, "rules": [
        *(extra or []), {"path": path, "action": action, "options": options or {}}]})


# -- url ----------------------------------------------------------------------------------
URL_POLICY = one_rule("$.u", "url", extra=[{"path": "$.user", "action": "learner_id"}])


@pytest.mark.parametrize(("url", "expected"), [
    ("https://lms.example.org/courses/c/courseware/?a=1#top",
     "https://lms.example.org/courses/c/courseware/"),
    ("https://jd:pw@lms.example.org:8443/x", "https://lms.example.org:8443/x"),
    ("//jd:pw@localhost/x?a=1", "//localhost/x"),
    ("//jd@lms/x", "//lms/x"),
    ("//jdupont.example.org/x", "//_user_.example.org/x"),
    ("https://lms.example.org/u/marie", "https://lms.example.org/u/_user_"),
    ("https://lms.example.org/api/user/v1/accounts/marie/image",
     "https://lms.example.org/api/user/v1/accounts/_user_/image"),
    ("https://lms.example.org/x/JDUPONT/y", "https://lms.example.org/x/_user_/y"),
    ("https://lms.example.org/x/a%40b.fr/y", "https://lms.example.org/x/_user_/y"),
    ("https://JDupont.pages.example.org:8443/cv", "https://_user_.pages.example.org:8443/cv"),
    ("https://blog.jdupont.fr/", "https://blog._user_.fr/"),
    ("https://xjdupont.example.org/", "https://xjdupont.example.org/"),
    ("https://10.0.0.6/x", "https://10.0.0.6/x"),
    ("https://[2001:db8::1]:8080/x", "https://[2001:db8::1]:8080/x"),
    ("https://jd%75pont.example.org/", "https://_user_.example.org/"),
    ("/courses/c/progress/", "/courses/c/progress/"),
    ("play_video", "play_video"),
    ("edx.course.enrollment.activated", "edx.course.enrollment.activated"),
    ("", ""),
    (None, None),
])
def test_url(keys, url, expected):
    assert anonymise({"user": "jdupont", "u": url}, URL_POLICY, keys=keys).get("u") == expected


def test_url_replaces_a_dotted_identifier_spelled_by_host_labels(keys):
    out = anonymise({"user": "jean.dupont", "u": "https://jean.dupont.example.org/a"},
                    URL_POLICY, keys=keys)
    assert out["u"] == "https://_user_.example.org/a"


def test_url_leaves_ip_hosts_alone_even_when_a_user_id_is_a_number(keys):
    for url in ("https://10.0.0.6/x", "https://[::ffff:10.0.0.6]:443/x", "https://[::6]/x"):
        assert anonymise({"user": "6", "u": url}, URL_POLICY, keys=keys)["u"] == url


def test_url_host_takes_the_longest_identifier_first():
    """Overlapping identifiers (``dupont`` inside ``jean.dupont``): the longer one goes
    whole, whatever order the set of forms iterates in, so no label is left behind."""
    for forms in (("dupont", "jean.dupont"), ("jean.dupont", "dupont")):  # both orders
        got = treat_url("https://jean.dupont.example.org/", forms, frozenset(), "T")  # type: ignore[arg-type]
        assert got == "https://T.example.org/"


def test_url_leaves_an_unchanged_url_byte_identical(keys):
    url = "https://lms.example.org/courses/course-v1:FUN+01+s1/jump_to/block-v1:FUN+01+s1+type@x+block@ab"
    assert anonymise({"user": "jdupont", "u": url}, URL_POLICY, keys=keys)["u"] == url


def test_url_refuses_a_non_text_value(keys):
    with pytest.raises(RecordError):
        anonymise({"u": 3}, URL_POLICY, keys=keys)


def test_url_token_option_is_checked():
    with pytest.raises(PolicyError):
        one_rule("$.u", "url", {"token": "a b"})


# -- date_shift ---------------------------------------------------------------------------
SHIFT = one_rule("$.t", "date_shift", {"days": 30, "learner": "$.actor"},
                 extra=[{"path": "$.actor", "action": "agent",
                         "options": {"home_page": "https://x.org"}}])


def _actor(name: str) -> dict:
    return {"account": {"homePage": "https://lms.example.org", "name": name}}


def test_date_shift_keeps_intervals_of_one_learner(keys):
    a = anonymise({"actor": _actor("a"), "t": "2024-03-01T10:00:00.123+00:00"}, SHIFT, keys=keys)
    b = anonymise({"actor": _actor("a"), "t": "2024-03-05T12:30:00.123+00:00"}, SHIFT, keys=keys)
    ta, tb = datetime.fromisoformat(a["t"]), datetime.fromisoformat(b["t"])
    assert (tb - ta).total_seconds() == 4 * 86400 + 2.5 * 3600
    assert a["t"].endswith("T10:00:00.123+00:00")
    assert abs((ta - datetime.fromisoformat("2024-03-01T10:00:00.123+00:00")).days) <= 30


def test_date_shift_differs_between_learners_and_keys(keys):
    offsets = set()
    for name in "abcdefgh":
        out = anonymise({"actor": _actor(name), "t": "2024-03-01"}, SHIFT, keys=keys)
        offsets.add(out["t"])
    assert len(offsets) > 3
    same = anonymise({"actor": _actor("a"), "t": 1_700_000_000}, SHIFT, keys=keys)["t"]
    assert (same - 1_700_000_000) % 86400 == 0


def test_date_shift_without_learner_rejects(keys):
    with pytest.raises(RecordError) as e:
        anonymise({"t": "2024-03-01"}, SHIFT, keys=keys)
    assert "learner" in str(e.value)


def test_date_shift_learner_path_must_be_plain():
    with pytest.raises(PolicyError):
        one_rule("$.t", "date_shift", {"days": 3, "learner": "$.a[*]"})


# -- json ---------------------------------------------------------------------------------
def test_json_applies_rules_inside_text_and_objects(keys):
    p = one_rule("$.e", "json", extra=[{"path": "$.e.keep", "action": "keep"},
                                       {"path": "$.e.secret", "action": "hash"}])
    text = anonymise({"e": '{"keep": 1, "secret": "x", "other": "y"}'}, p, keys=keys)["e"]
    inner = json.loads(text)
    assert inner["keep"] == 1 and inner["secret"] != "x" and "other" not in inner
    obj = anonymise({"e": {"keep": 1, "other": "y"}}, p, keys=keys)["e"]
    assert obj == {"keep": 1}
    assert anonymise({"e": "a=1&b=2"}, p, keys=keys)["e"] == ""
    drop = one_rule("$.e", "json", {"otherwise": "drop"})
    assert "e" not in anonymise({"e": "not json", "x": 1}, drop, keys=keys)


# -- learner_id, ipv4_prefix, linkage -------------------------------------------------------
def test_learner_id_keeps_types(keys):
    p = one_rule("$.id", "learner_id", {"encoding": "integer"})
    assert isinstance(anonymise({"id": 42}, p, keys=keys)["id"], int)
    assert anonymise({"id": "42"}, p, keys=keys)["id"] == str(anonymise({"id": 42}, p,
                                                                            keys=keys)["id"])
    assert anonymise({"id": ""}, p, keys=keys)["id"] == ""
    u = one_rule("$.u", "learner_id")
    out = anonymise({"u": "jdupont"}, u, keys=keys)["u"]
    assert 2 <= len(out) <= 30 and out != "jdupont"


def test_cross_format_linkage(keys):
    xapi, edx = Policy.load("xapi"), Policy.load("edx")
    assert xapi.domain == edx.domain
    stmt = {"id": "x", "actor": {"account": {"homePage": "https://lms.example.org",
                                             "name": "jdupont"}}}
    event = {"username": "jdupont"}
    a = anonymise(stmt, xapi, keys=keys)["actor"]["account"]["name"]
    b = anonymise(event, edx, keys=keys)["username"]
    assert a == b
    other = one_rule("$.username", "learner_id", domain="another-domain")
    assert anonymise(event, other, keys=keys)["username"] != a
    ids = one_rule("$.actor", "agent", {"home_page": "https://x.org", "encoding": "integer"})
    by_id = anonymise({"actor": {"account": {"homePage": "h:x", "name": "42"}}}, ids, keys=keys)
    uid = one_rule("$.context.user_id", "learner_id", {"encoding": "integer"})
    assert by_id["actor"]["account"]["name"] == str(
        anonymise({"context": {"user_id": 42}}, uid, keys=keys)["context"]["user_id"])


def test_mbox_and_its_sha1_give_one_pseudonym(keys):
    import hashlib
    p = one_rule("$.a", "agent", {"home_page": "https://x.org"})
    m = anonymise({"a": {"mbox": "mailto:Jeanne@Example.org"}}, p, keys=keys)["a"]
    s = anonymise({"a": {"mbox_sha1sum": hashlib.sha1(b"mailto:jeanne@example.org").hexdigest()}},
                  p, keys=keys)["a"]
    assert m == s


def test_agent_home_page_must_be_an_iri():
    with pytest.raises(PolicyError):
        one_rule("$.a", "agent", {"home_page": "fun-mooc.fr"})


def test_different_keys_give_different_pseudonyms():
    p = Policy.load("edx")
    a = anonymise({"username": "jdupont"}, p, keys=KeyRing.generate())
    b = anonymise({"username": "jdupont"}, p, keys=KeyRing.generate())
    assert a != b


# -- record-aware machinery -----------------------------------------------------------------
def test_policies_without_record_aware_rules_build_no_context(keys):
    plan = compile_plan(Policy.load("xapi"), keys)
    assert not plan.record_aware
    assert compile_plan(Policy.load("edx"), keys).record_aware


def test_identifiers_are_gathered_through_embedded_json(keys):
    plan = compile_plan(Policy.load("edx"), keys)
    ids = plan.gather({"username": "a1", "context": {"user_id": 7},
                       "event": '{"student": "b2", "user_id": 9}'})
    assert sorted(ids) == ["7", "9", "a1", "b2"]


def test_json_text_emptied_by_the_policy_stays_json_text(keys):
    p = one_rule("$.e", "json", extra=[{"path": "$.e.keep", "action": "keep"}])
    assert anonymise({"e": '{"secret": "x"}', "k": 1}, p, keys=keys)["e"] == "{}"


def test_agent_object_type_is_never_copied_unless_agent_or_group(keys):
    from pseudonym import RecordError, anonymise
    from pseudonym.policy import Policy
    p = Policy.load("xapi")
    bad = {"actor": {"objectType": "alice@example.org", "mbox": "mailto:a@example.org"},
           "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
           "object": {"id": "http://example.org/a"}}
    with pytest.raises(RecordError) as e:
        anonymise(bad, p, keys=keys)
    assert "alice" not in str(e.value)
    bad["actor"]["objectType"] = "Agent"
    assert anonymise(bad, p, keys=keys)["actor"]["objectType"] == "Agent"


@pytest.mark.parametrize(("url", "expected"), [
    ("mailto:jean@example.org", "_user_"),
    ("https://lms.example.org/contact/mailto:jean@example.org/x",
     "https://lms.example.org/contact/_user_/x"),
    ("https://lms.example.org/a;email=jean@example.org/b", "https://lms.example.org/a/b"),
    ("https://lms.example.org/a;jsessionid=0123abcd", "https://lms.example.org/a"),
    ("https://lms.example.org/x/jean@example.org;v=1", "https://lms.example.org/x/_user_"),
    ("/courses/c/jump_to/block-v1:FUN+01+s1+type@html+block@intro.html",
     "/courses/c/jump_to/block-v1:FUN+01+s1+type@html+block@intro.html"),
])
def test_url_finds_addresses_inside_segments_and_cuts_segment_parameters(keys, url, expected):
    assert anonymise({"user": "jdupont", "u": url}, URL_POLICY, keys=keys)["u"] == expected


@pytest.mark.parametrize("value", [
    "2024-01-02 jean@example.org", "2024-01-02Tjean", "2024-01-02T10:00:00Z jdupont",
    "2024-01-02T10:00:00+01:00[Europe/Paris]", "2024-01-02T99:00",
])
def test_date_shift_rejects_text_that_is_not_wholly_a_timestamp(keys, value):
    with pytest.raises(RecordError) as e:
        anonymise({"actor": _actor("a"), "t": value}, SHIFT, keys=keys)
    assert "ISO 8601" in str(e.value)
    assert value not in str(e.value) and "jean" not in str(e.value)


@pytest.mark.parametrize("value", ["2024-03-01", "2024-03-01T10:00", "2024-03-01 10:00:00Z",
                                   "2024-03-01T10:00:00.123456-05:30"])
def test_date_shift_keeps_the_format_of_valid_timestamps(keys, value):
    out = anonymise({"actor": _actor("a"), "t": value}, SHIFT, keys=keys)["t"]
    day = anonymise({"actor": _actor("a"), "t": "2024-03-01"}, SHIFT, keys=keys)["t"]
    assert out == day + value[10:]
    assert datetime.fromisoformat(out)
