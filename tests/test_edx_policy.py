"""The built-in edx policy: identifiers gone in every form, analytics intact, Ralph-valid."""

from __future__ import annotations

import copy
import json

import pytest
from ralph.models.selector import ModelSelector
from ralph.models.validator import Validator

from pseudonym import Policy, anonymise

from .conftest import assert_gone, variants

COURSE = "course-v1:FUN-MOOC+00002+session01"
USER = "jeanne.dupont42"
UID = 31415926
EMAIL = "Jeanne.Dupont@example.org"
IP = "203.0.113.77"
SESSION = "0123456789abcdef0123456789abcdef"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0 JeanneDupontBuild"
BLOCK = "block-v1:FUN-MOOC+00002+session01+type@problem+block@3f2a9c0e1b2d4f6a8c0e1b2d4f6a8c0e"
INPUT = "3f2a9c0e1b2d4f6a8c0e1b2d4f6a8c0e_2_1"
VALIDATOR = Validator(ModelSelector("ralph.models.edx"))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load("edx")


def common() -> dict:
    return {"username": USER, "ip": IP, "agent": UA, "host": "lms.example.org",
            "referer": f"https://lms.example.org/courses/{COURSE}/courseware/",
            "accept_language": "fr-FR,fr;q=0.9", "time": "2023-05-04T10:11:12.345678+00:00"}


def server_event() -> dict:
    return {**common(), "event_source": "server", "event_type": f"/courses/{COURSE}/courseware/",
            "event": '{"GET": {}, "POST": {}}', "page": None,
            "context": {"course_id": COURSE, "org_id": "FUN-MOOC", "user_id": UID,
                        "path": f"/courses/{COURSE}/courseware/"}}


def play_video() -> dict:
    return {**common(), "event_source": "browser", "event_type": "play_video",
            "name": "play_video", "event": '{"id": "a1b2c3", "code": "html5", "currentTime": 12.5}',
            "context": {"course_id": COURSE, "org_id": "FUN-MOOC", "user_id": UID,
                        "path": "/event"},
            "page": f"https://lms.example.org/courses/{COURSE}/courseware/week1/",
            "session": SESSION}


def problem_check_browser() -> dict:
    return {**play_video(), "event_type": "problem_check", "name": "problem_check",
            "event": "input_" + "a" * 32 + "_2_1=choice_1"}


def enrollment() -> dict:
    return {**common(), "event_source": "server", "event_type": "edx.course.enrollment.activated",
            "name": "edx.course.enrollment.activated", "page": None,
            "event": {"course_id": COURSE, "mode": "audit", "user_id": UID},
            "context": {"course_id": COURSE, "org_id": "FUN-MOOC", "user_id": UID,
                        "path": "/api/enrollment/v1/enrollment"}}


def problem_check_server() -> dict:
    return {**common(), "event_source": "server", "event_type": "problem_check",
            "page": "x_module",
            "event": {"problem_id": BLOCK, "attempts": 1, "grade": 1, "max_grade": 2,
                      "success": "incorrect",
                      "answers": {INPUT: f"My name is Jeanne, mail me at {EMAIL}"},
                      "correct_map": {INPUT: {"correctness": "incorrect", "msg": "",
                                              "hint": "", "hintmode": None,
                                              "npoints": None, "queuestate": None}},
                      "state": {"done": True, "seed": 1, "correct_map": {}, "input_state": {},
                                "student_answers": {INPUT: f"{USER} {EMAIL}"}},
                      "submission": {INPUT: {"question": "Who?", "answer": EMAIL,
                                               "correct": False, "response_type": "stringresponse",
                                               "input_type": "textline", "variant": ""}}},
            "context": {"course_id": COURSE, "org_id": "FUN-MOOC", "user_id": UID,
                        "path": "/courses/x/xblock/handler/problem_check",
                        "module": {"display_name": "Q1", "usage_key": BLOCK}}}


EXAMPLES = {"server": server_event, "play_video": play_video,
            "problem_check_browser": problem_check_browser, "enrollment": enrollment,
            "problem_check_server": problem_check_server}


def _model(event: dict) -> str | None:
    try:
        return type(VALIDATOR.get_first_valid_model(copy.deepcopy(event))).__name__
    except Exception:
        return None


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_outputs_validate_with_ralph_where_inputs_did(policy, keys, name):
    event = EXAMPLES[name]()
    model = _model(event)
    out = anonymise(event, policy, keys=keys)
    if model is None:
        pytest.skip("Ralph rejects this input too")
    assert _model(out) == model
    assert_gone(out, USER, str(UID), IP, UA, SESSION, EMAIL)


def test_server_event_validates_with_a_user_path(policy, keys):
    event = server_event()
    event["event_type"] = event["context"]["path"] = f"/u/{USER}"
    event["referer"] = f"https://lms.example.org/u/{USER}?tab=about"
    assert _model(event) == "Server"
    out = anonymise(event, policy, keys=keys)
    assert _model(out) == "Server"
    assert out["event_type"] == out["context"]["path"] == "/u/_user_"
    assert_gone(out, USER)


def _put(event: dict, path: tuple, value: object) -> None:
    node = event
    for k in path[:-1]:
        if isinstance(node.get(k), str):
            node[k] = json.loads(node[k])
        node = node.setdefault(k, {})
    node[path[-1]] = value


# Locations holding an identifier itself: (path, secret, typed value of a form).
ID_PLACES = [
    (("username",), USER), (("context", "username"), USER),
    (("context", "user_id"), str(UID)), (("event", "user_id"), str(UID)),
    (("data", "user_id"), str(UID)), (("event", "username"), USER),
    (("event", "instructor"), USER), (("event", "student"), USER), (("event", "user"), USER),
    (("data", "target_username"), USER),
    (("ip",), IP), (("context", "ip"), IP), (("context", "client", "ip"), IP),
    (("agent",), UA), (("context", "agent"), UA),
    (("session",), SESSION), (("context", "session"), SESSION),
    (("accept_language",), "fr-FR-x-jeannedupont"),
]


@pytest.mark.parametrize(("path", "secret"), ID_PLACES, ids=lambda v: ".".join(v)
                         if isinstance(v, tuple) else "")
@pytest.mark.parametrize("form", sorted(variants(USER)))
@pytest.mark.parametrize("example", ["play_video", "enrollment"])
def test_identifiers_are_gone_in_every_form(policy, keys, path, secret, form, example):
    event = EXAMPLES[example]()
    value = variants(secret)[form]
    _put(event, path, int(value) if value.isdigit() and "user_id" in path else value)
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, secret, USER, str(UID), IP, UA)


URL_PLACES = [("referer",), ("page",), ("context", "path"), ("event_type",)]


@pytest.mark.parametrize("path", URL_PLACES, ids=".".join)
@pytest.mark.parametrize("secret", [USER, str(UID), EMAIL])
@pytest.mark.parametrize("form", sorted(variants(USER)))
def test_urls_lose_the_identifiers_of_the_record(policy, keys, path, secret, form):
    event = play_video()
    if secret == EMAIL:
        event["username"] = EMAIL  # some platforms use e-mails as usernames
    f = variants(secret)[form]
    url = (f"https://lms.example.org/courses/{COURSE}/{f}/progress?user={f}&x={f}#{f}"
           if path != ("event_type",) and path != ("context", "path")
           else f"/courses/{COURSE}/{f}/progress?user={f}")
    _put(event, path, url)
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, secret)
    got = out
    for k in path:
        got = got[k]
    assert got.startswith(("https://lms.example.org/courses/" + COURSE, "/courses/" + COURSE))


@pytest.mark.parametrize("form", sorted(variants("marie.curie")))
def test_a_profile_path_names_someone_else_too(policy, keys, form):
    event = server_event()
    event["event_type"] = event["context"]["path"] = "/u/" + variants("marie.curie")[form]
    out = anonymise(event, policy, keys=keys)
    assert out["event_type"] == "/u/_user_"
    assert_gone(out, "marie.curie")


@pytest.mark.parametrize("form", sorted(variants(EMAIL)))
@pytest.mark.parametrize("field", ["GET", "POST"])
def test_request_parameters_are_gone(policy, keys, form, field):
    event = server_event()
    event["event"] = json.dumps({"GET": {}, "POST": {}, field: {"email": [variants(EMAIL)[form]],
                                                                "q": [USER]}})
    out = anonymise(event, policy, keys=keys)
    assert json.loads(out["event"]) == {"GET": {}, "POST": {}}
    assert_gone(out, EMAIL, USER)


FREE_TEXT = [
    ("event", "answers", INPUT), ("event", "state", "student_answers", INPUT),
    ("event", "submission", INPUT, "answer"), ("event", "body"), ("event", "title"),
    ("data", "body"), ("data", "title"), ("event", "note_text"),
    ("event", "highlighted_content"), ("event", "answer", "parts"),
    ("event", "submission_text"), ("event", "query"),
]


@pytest.mark.parametrize("path", FREE_TEXT, ids=".".join)
@pytest.mark.parametrize("form", sorted(variants(EMAIL)))
def test_free_text_is_gone(policy, keys, path, form):
    event = problem_check_server()
    _put(event, path, f"Jeanne Dupont here, write to {variants(EMAIL)[form]} or +33 6 12 34 56 78")
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, EMAIL, "Jeanne Dupont", "+33 6 12 34 56 78")


@pytest.mark.parametrize("form", sorted(variants(EMAIL)))
@pytest.mark.parametrize("side", ["old", "new"])
def test_emails_in_settings_changes_are_gone(policy, keys, form, side):
    event = {**common(), "event_source": "server", "event_type": "edx.user.settings.changed",
             "name": "edx.user.settings.changed", "page": None,
             "context": {"course_id": "", "org_id": "", "user_id": UID, "path": "/x"},
             "event": {"setting": "pref-lang", "old": "fr", "new": "en", "table": "x"}}
    event["event"][side] = f"contact {variants(EMAIL)[form]}"
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, EMAIL)
    assert out["event"]["setting"] == "pref-lang"
    event["event"].update(setting="email", old=EMAIL, new="Jeanne.D@example.com")
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, EMAIL, "Jeanne.D@example.com")


ANALYTIC = [
    ("event_type",), ("name",), ("event_source",), ("time",), ("host",),
    ("context", "course_id"), ("context", "org_id"), ("context", "path"),
]


@pytest.mark.parametrize("path", ANALYTIC, ids=".".join)
def test_analytic_fields_survive(policy, keys, path):
    event = play_video()
    out = anonymise(event, policy, keys=keys)
    a, b = event, out
    for k in path:
        a, b = a[k], b[k]
    assert json.dumps(a) == json.dumps(b)


@pytest.mark.parametrize("key", ["id", "code", "currentTime"])
def test_video_payload_survives(policy, keys, key):
    event = play_video()
    out = anonymise(event, policy, keys=keys)
    assert json.loads(out["event"])[key] == json.loads(event["event"])[key]


@pytest.mark.parametrize("key", ["problem_id", "attempts", "grade", "max_grade", "success",
                                 "correct_map"])
def test_problem_payload_survives(policy, keys, key):
    event = problem_check_server()
    out = anonymise(event, policy, keys=keys)
    assert out["event"][key] == event["event"][key]
    assert out["event"]["problem_id"] == BLOCK
    assert out["context"]["module"] == event["context"]["module"]
    assert set(out["event"]["answers"]) == {INPUT}


def test_enrollment_mode_and_course_survive(policy, keys):
    out = anonymise(enrollment(), policy, keys=keys)
    assert out["event"]["mode"] == "audit" and out["event"]["course_id"] == COURSE


def test_formats_are_preserved(policy, keys):
    out = anonymise(play_video(), policy, keys=keys)
    assert 2 <= len(out["username"]) <= 30
    assert isinstance(out["context"]["user_id"], int) and out["context"]["user_id"] != UID
    assert out["ip"] == "203.0.113.0"
    assert len(out["session"]) == 32 and int(out["session"], 16) >= 0
    assert out["session"] == out["session"].lower() != SESSION
    assert out["agent"] == "" and out["accept_language"] == ""
    ipv6 = play_video()
    ipv6["ip"] = "2001:db8::1"
    assert anonymise(ipv6, policy, keys=keys)["ip"] == ""


def test_a_payload_name_that_is_the_event_name_leaves_the_event_type(policy, keys):
    """PDF textbook events repeat their event name in the payload's ``name``: not a
    person's name, it must not be removed from event_type, name and page as one."""
    tb = "textbook.pdf.page.navigatednext"
    event = {**play_video(), "event_type": tb, "name": tb,
             "event": json.dumps({"name": tb, "chapter": "/asset/ch1.pdf", "page": 3})}
    out = anonymise(event, policy, keys=keys)
    assert out["event_type"] == out["name"] == tb
    assert "name" not in json.loads(out["event"])
    new = anonymise({"name": tb, "data": {"name": tb, "page": 3},
                     "context": {"username": USER, "path": "/event"}}, policy, keys=keys)
    assert new["name"] == tb and new["data"] == {"page": 3}


def test_same_learner_same_pseudonym_across_events(policy, keys):
    a = anonymise(play_video(), policy, keys=keys)
    b = anonymise(enrollment(), policy, keys=keys)
    assert a["username"] == b["username"]
    assert a["context"]["user_id"] == b["context"]["user_id"] == b["event"]["user_id"]
    other = play_video()
    other["username"] = "someone.else"
    assert anonymise(other, policy, keys=keys)["username"] != a["username"]


def test_name_data_context_style(policy, keys):
    event = {"name": "edx.course.enrollment.mode_changed", "timestamp": "2024-01-02T03:04:05Z",
             "data": {"user_id": UID, "course_id": COURSE, "mode": "verified",
                      "target_username": "marie.curie"},
             "context": {"user_id": UID, "username": USER, "course_id": COURSE,
                         "org_id": "FUN-MOOC", "path": "/api/enrollment/v1/enrollment"}}
    out = anonymise(event, policy, keys=keys)
    assert out["name"] == event["name"] and out["timestamp"] == event["timestamp"]
    assert out["data"]["mode"] == "verified" and out["data"]["course_id"] == COURSE
    assert out["data"]["user_id"] == out["context"]["user_id"] != UID
    assert_gone(out, USER, str(UID), "marie.curie")


def settings_changed(setting: str, old, new) -> dict:
    return {**common(), "event_source": "server", "event_type": "edx.user.settings.changed",
            "name": "edx.user.settings.changed", "page": None,
            "context": {"course_id": "", "org_id": "", "user_id": UID, "path": "/x"},
            "event": {"setting": setting, "old": old, "new": new, "user_id": UID,
                      "table": "auth_userprofile"}}


@pytest.mark.parametrize(("setting", "old", "new"), [
    ("first_name", "Jeanne", "Jeannette"), ("last_name", "Dupont", "Durand"),
    ("gender", "f", "o"), ("country", "FR", "CI"), ("state", "Bretagne", "Alsace"),
    ("level_of_education", "p", "m"), ("year_of_birth", 1984, 1985),
    ("language_proficiencies", [{"code": "br"}], [{"code": "eu"}]),
    ("mailing_address", "3 rue des Lilas", "4 rue des Lilas"), ("bio", "Ancienne", "Nouvelle"),
    ("time_zone", "Indian/Reunion", "Pacific/Tahiti"), ("a_setting_added_later", "x1", "y2"),
])
def test_settings_changes_are_emptied_unless_the_setting_is_allowed(policy, keys, setting,
                                                                     old, new):
    out = anonymise(settings_changed(setting, old, new), policy, keys=keys)
    assert out["event"] == {}
    assert out["event_type"] == "edx.user.settings.changed"


def test_a_harmless_setting_change_keeps_its_values(policy, keys):
    out = anonymise(settings_changed("pref-lang", "fr", "en"), policy, keys=keys)
    assert out["event"]["setting"] == "pref-lang"
    assert (out["event"]["old"], out["event"]["new"]) == ("fr", "en")
    assert out["event"]["user_id"] != UID and out["event"]["table"] == "auth_userprofile"


def test_navigation_positions_without_a_setting_survive(policy, keys):
    event = {**play_video(), "event_type": "seq_goto", "name": "seq_goto",
             "event": json.dumps({"old": 1, "new": 3, "id": BLOCK})}
    out = anonymise(event, policy, keys=keys)
    assert json.loads(out["event"]) == {"old": 1, "new": 3, "id": BLOCK}


def test_identifiers_in_setting_keys_and_numbers_are_gone(policy, keys):
    event = settings_changed("pref-lang", {EMAIL: "x", USER: 1}, [UID, USER])
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, EMAIL, USER, str(UID))
    assert out["event"]["old"] == {"[EMAIL]": "x", "[USER]": 1}
    assert out["event"]["new"] == ["[USER]", "[USER]"]


def test_a_settings_change_held_as_json_text_is_emptied_too(policy, keys):
    event = settings_changed("first_name", "Jeanne", "Jeannette")
    event["event"] = json.dumps(event["event"])
    out = anonymise(event, policy, keys=keys)
    assert out["event"] == "{}"
    assert_gone(out, "Jeanne", "Jeannette")


CERT = "5c1b2f0d8e7a4b3c9d6e1f2a3b4c5d6e"


@pytest.mark.parametrize("name", ["edx.certificate.created", "edx.certificate.shared",
                                  "edx.certificate.evidence_visited"])
def test_a_certificate_id_is_a_pseudonym(policy, keys, name):
    """``certificate_id`` is the certificate's ``verify_uuid``: its public web page
    (/certificates/<verify_uuid>) shows the learner's full name, so it cannot stay in
    clear, nor in the event's own paths; a keyed pseudonym of the same shape still links
    a certificate's events."""
    event = {**common(), "event_source": "server", "event_type": name, "name": name,
             "page": None, "referer": f"https://lms.example.org/certificates/{CERT}",
             "context": {"course_id": COURSE, "user_id": UID, "path": f"/certificates/{CERT}"},
             "event": {"user_id": UID, "course_id": COURSE, "certificate_id": CERT,
                       "enrollment_mode": "verified"}}
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, CERT)
    got = out["event"]["certificate_id"]
    assert len(got) == 32 and int(got, 16) >= 0 and got == got.lower()
    assert anonymise(event, policy, keys=keys)["event"]["certificate_id"] == got
    assert out["event"]["course_id"] == COURSE and out["event"]["enrollment_mode"] == "verified"
    assert out["context"]["path"] == "/certificates/_user_"


def test_a_certificate_page_viewed_by_anyone_loses_its_id(policy, keys):
    """A view of someone's certificate page carries the page's id in its paths only (no
    certificate_id field): the id alone would let the output's reader open the page and
    read the holder's name."""
    path = f"/certificates/{CERT}"
    event = {**common(), "event_source": "server", "event_type": path, "name": path,
             "page": None, "referer": f"https://lms.example.org{path}",
             "context": {"course_id": "", "user_id": None, "path": path}, "event": {}}
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, CERT)
    assert out["event_type"] == out["context"]["path"] == "/certificates/_user_"


def test_a_graders_message_and_hint_are_emptied_and_correctness_kept(policy, keys):
    """Grader feedback can quote the learner's answer; analytics needs correctness and
    points, which stay (and Ralph still accepts the event)."""
    event = problem_check_server()
    quoted = f"You wrote {EMAIL}: not quite"
    for where in (event["event"], event["event"]["state"]):
        where["correct_map"] = {INPUT: {"correctness": "incorrect", "msg": quoted,
                                        "hint": f"Hint for {USER}", "hintmode": "always",
                                        "npoints": 0, "queuestate": None}}
    out = anonymise(event, policy, keys=keys)
    assert_gone(out, EMAIL, "You wrote", "Hint for")
    for where in (out["event"], out["event"]["state"]):
        assert where["correct_map"] == {INPUT: {"correctness": "incorrect", "msg": "",
                                                "hint": "", "hintmode": "always",
                                                "npoints": 0, "queuestate": None}}
    assert _model(out) == _model(event) is not None
