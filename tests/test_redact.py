"""The redactor, as examples: what it masks, that it never masks its own placeholder, and how edits get values back."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.redact import PLACEHOLDER, Redactor, RestoreError, run_key

FORMS = [
    ("legacy ENV", "ENV DB_PASSWORD s3cr3t value", "s3cr3t value"),
    ("ARG default", "ARG NPM_TOKEN=npm-tok-123", "npm-tok-123"),
    ("quoted YAML key", '"POSTGRES_PASSWORD": "pg-pass-1"', "pg-pass-1"),
    ("single-quoted key", "'API_SECRET': 'sec-ret-2'", "sec-ret-2"),
    ("URL userinfo", "DATABASE_URL: postgres://app:url-pw-3@db:5432/app", "url-pw-3"),
    ("curl -u", "RUN curl -u admin:curl-pw-4 https://x", "curl-pw-4"),
    ("curl --user=", "RUN curl --user=admin:curl-pw-5 https://x", "curl-pw-5"),
    ("DSN part", 'CONN: "Server=db;User Id=sa;Password=dsn-pw-6;"', "dsn-pw-6"),
    ("bearer", 'curl -H "Authorization: Bearer bearer-tok-7a"', "bearer-tok-7a"),
    (".npmrc token", "//registry.npmjs.org/:_authToken=npmrc-tok-8", "npmrc-tok-8"),
    (".npmrc _auth", "_auth=YWRtaW46cHc9", "YWRtaW46cHc9"),
    (".pypirc", "password = pypi-pass-9", "pypi-pass-9"),
    ("compose default", "DB_PASSWORD: ${DB_PASSWORD:-default-pw-10}", "default-pw-10"),
    ("private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEkey11\n-----END RSA PRIVATE KEY-----", "MIIEkey11"),
    ("private key cut short", "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt12", "b3BlbnNzaC1rZXkt12"),
    ("GitHub token", "token ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
]


@pytest.mark.parametrize("form, text, secret", FORMS, ids=[f[0] for f in FORMS])
def test_every_form_is_masked_once_and_stays_masked(form, text, secret):
    redact = Redactor()
    once = redact(text)
    assert secret not in once and PLACEHOLDER.search(once), once
    assert redact(once) == once  # idempotent: a placeholder is never masked again
    assert redact.restore(once, once, "f") == text  # and it stands for exactly what it replaced


def test_references_and_public_values_are_left_alone():
    redact = Redactor()
    text = "environment:\n  DB_PASSWORD: ${DB_PASSWORD}\n  DB_PASSWORD_FILE_ENV: $DB_PW\nARG NPM_TOKEN\n"
    assert redact(text) == text


def test_the_same_secret_gets_the_same_placeholder_in_a_run_and_across_resumes(tmp_path):
    key = run_key(tmp_path)
    first, again = Redactor({"env-literal-value"}, key=key), Redactor({"env-literal-value"}, key=run_key(tmp_path))
    a = first("A_TOKEN=env-literal-value\nB=env-literal-value")
    assert len(set(PLACEHOLDER.findall(a))) == 1
    assert again("B=env-literal-value") == first("B=env-literal-value")
    assert Redactor(key=b"another run key!")("B_TOKEN=x1234") != first("B_TOKEN=x1234")


def test_an_edit_that_keeps_a_placeholder_on_its_line_gets_the_value_back():
    redact = Redactor()
    original = "FROM node:20\nARG NPM_TOKEN=real-token-1\nADD . /app\n"
    shown = redact(original)
    edited = shown.replace("ADD . /app", "COPY . /app")
    assert redact.restore(shown, edited, "Dockerfile") == original.replace("ADD", "COPY")


def test_an_edit_that_drops_a_secret_line_is_fine():
    redact = Redactor()
    shown = redact("FROM node:20\nARG NPM_TOKEN=real-token-1\n")
    assert redact.restore(shown, "FROM node:20\nARG NPM_TOKEN\n", "Dockerfile") == "FROM node:20\nARG NPM_TOKEN\n"


@pytest.mark.parametrize(
    "edit, why",
    [
        (
            lambda s, p: s.replace(f"ARG NPM_TOKEN={p}", f"ENV NPM_TOKEN={p}"),
            "changes the text around a redacted secret",
        ),
        (lambda s, p: s + f"RUN echo {p} > /leak\n", "changes the text around a redacted secret"),
        (lambda s, p: s + "ENV X=__REDACTED_00000000__\n", "does not hold"),
        (lambda s, p: s.replace(p, "[REDACTED]"), r"writes the redaction mark '\[REDACTED\]'"),
    ],
)
def test_an_edit_that_moves_changes_or_invents_a_placeholder_is_refused(edit, why):
    redact = Redactor()
    shown = redact("FROM node:20\nARG NPM_TOKEN=real-token-1\n")
    placeholder = PLACEHOLDER.search(shown).group(0)
    with pytest.raises(RestoreError, match=why):
        redact.restore(shown, edit(shown, placeholder), "Dockerfile")


def test_a_secret_found_once_is_masked_where_it_appears_again():
    """awesome-compose's aspnet-mssql: the password is assigned, then repeated in the healthcheck."""
    redact = Redactor()
    text = (
        "    environment:\n      SA_PASSWORD: example_123\n    healthcheck:\n"
        '      test: ["CMD-SHELL", "sqlcmd -S localhost -U sa -P example_123 -Q \'SELECT 1\'"]\n'
    )
    once = redact(text)
    assert "example_123" not in once and len(set(PLACEHOLDER.findall(once))) == 1
    assert redact(once) == once and redact.restore(once, once, "f") == text


def test_prose_flags_and_ids_that_look_like_credentials_stay():
    redact = Redactor()
    for text in (
        "docker run -u 1000:1000 app",
        "Basic authentication is off",
        "the token budget is spent",
        "BYPASS_CACHE=true",
        "PASSWORD_FILE=/run/secrets/db",
        "DATABASE_PASSWORD=/run/secrets/db-password",
    ):
        assert redact(text) == text
