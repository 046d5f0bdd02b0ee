import pytest

from bulkretry._api_settings import (
    DEFAULT_BASE_URL,
    DEFAULT_SCOPES,
    ClientCredentials,
    check_url,
    load_api_settings,
)
from bulkretry._discovery import ListingSettings
from bulkretry._errors import UsageError
from bulkretry._settings import JobSettings
from bulkretry._text import Secret
from bulkretry.cli.parser import build_parser

BASE = {"AEP_ORG_ID": "ORG@AdobeOrg", "AEP_ACCESS_TOKEN": "tok-secret", "AEP_API_KEY": "key"}


def test_defaults_from_the_contract():
    """Base URL, sandbox and the static token come from the contract's defaults."""
    settings = load_api_settings(BASE)
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.sandbox == "prod"
    assert settings.credentials == Secret("tok-secret")


def test_flags_beat_environment():
    """A flag wins over its environment variable."""
    env = BASE | {"AEP_SANDBOX_NAME": "dev", "AEP_FLOW_SERVICE_URL": "https://a.example/fs"}
    settings = load_api_settings(
        env, sandbox="stage", org="FLAG@AdobeOrg", base_url="https://b.example/x/"
    )
    assert (settings.sandbox, settings.org_id, settings.base_url) == (
        "stage",
        "FLAG@AdobeOrg",
        "https://b.example/x",
    )


def test_client_credentials_win_over_a_static_token_with_one_warning():
    """With both kinds of credentials, OAuth is used and the token is ignored, loudly."""
    env = BASE | {"AEP_CLIENT_ID": "cid", "AEP_CLIENT_SECRET": "shh"}
    del env["AEP_API_KEY"]
    settings = load_api_settings(env)
    assert isinstance(settings.credentials, ClientCredentials)
    assert settings.credentials.scopes == DEFAULT_SCOPES
    assert settings.api_key == "cid"
    assert len(settings.warnings) == 1 and "AEP_ACCESS_TOKEN" in settings.warnings[0]


def test_secret_can_come_from_a_file(tmp_path):
    """AEP_CLIENT_SECRET_FILE is read and stripped, for Kubernetes and systemd credentials."""
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    env = {"AEP_ORG_ID": "o", "AEP_CLIENT_ID": "cid", "AEP_CLIENT_SECRET_FILE": str(path)}
    settings = load_api_settings(env)
    assert isinstance(settings.credentials, ClientCredentials)
    assert settings.credentials.client_secret.reveal() == "from-file"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AEP_ACCESS_TOKEN": "t", "AEP_API_KEY": "k"}, "AEP_ORG_ID"),
        ({"AEP_ORG_ID": "o", "AEP_API_KEY": "k"}, "no credentials"),
        ({"AEP_ORG_ID": "o", "AEP_ACCESS_TOKEN": "t"}, "AEP_API_KEY"),
        ({"AEP_ORG_ID": "o", "AEP_CLIENT_ID": "c"}, "AEP_CLIENT_SECRET"),
        ({"AEP_ORG_ID": "o", "AEP_CLIENT_SECRET": "s"}, "AEP_CLIENT_ID"),
        (
            {
                "AEP_ORG_ID": "o",
                "AEP_CLIENT_ID": "c",
                "AEP_CLIENT_SECRET": "s",
                "AEP_CLIENT_SECRET_FILE": "/x",
            },
            "not both",
        ),
        (
            {"AEP_ORG_ID": "o", "AEP_CLIENT_ID": "c", "AEP_CLIENT_SECRET_FILE": "/nonexistent"},
            "cannot read",
        ),
        (BASE | {"AEP_FLOW_SERVICE_URL": "http://platform.example.com"}, "loopback"),
        (BASE | {"AEP_FLOW_SERVICE_URL": "ftp://x"}, "http"),
    ],
)
def test_missing_or_contradictory_configuration_says_what_to_set(env, message):
    """Every configuration mistake is a UsageError naming the fix."""
    with pytest.raises(UsageError, match=message):
        load_api_settings(env)


def test_secret_values_never_show_in_reprs():
    """Secrets are masked in repr, str and the repr of settings holding them."""
    env = {"AEP_ORG_ID": "o", "AEP_CLIENT_ID": "cid", "AEP_CLIENT_SECRET": "hunter2-secret"}
    settings = load_api_settings(env)
    for text in (repr(settings), str(settings), f"{settings.credentials}"):
        assert "hunter2-secret" not in text


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/fs", "http://localhost/fs", "http://[::1]:9/fs", "https://x.example"],
)
def test_http_only_for_loopback(url):
    """Plain http is accepted for loopback hosts; https anywhere."""
    assert check_url(url, "--base-url") == url


@pytest.mark.parametrize(
    "kwargs", [{"rate": -1}, {"concurrency": 0}, {"max_attempts": 0}, {"timeout": 0}]
)
def test_job_settings_reject_nonsense(kwargs):
    """Out-of-range job settings are usage errors, even from the library API."""
    with pytest.raises(UsageError):
        JobSettings(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": -1},
        {"rate": float("inf")},
        {"max_attempts": 0},
        {"timeout": 0},
        {"timeout": float("nan")},
        {"page_size": 0},
    ],
)
def test_listing_settings_reject_nonsense_like_job_settings(kwargs):
    """Listing settings are checked like job settings, with the same messages."""
    with pytest.raises(UsageError):
        ListingSettings(flow_ids=("flow-1",), **kwargs)
    shared = {name: value for name, value in kwargs.items() if name != "page_size"}
    if shared:
        with pytest.raises(UsageError) as job:
            JobSettings(**shared)
        with pytest.raises(UsageError) as listing:
            ListingSettings(flow_ids=("flow-1",), **shared)
        assert str(listing.value) == str(job.value)


def test_parser_defaults_are_the_settings_defaults():
    """The flags' defaults and the library's are one set of values, the contract's."""
    args = build_parser().parse_args(["retry"])
    job = JobSettings()
    listing = ListingSettings(flow_ids=("flow-1",))
    assert (args.rate, args.concurrency, args.max_attempts, args.timeout) == (10, 10, 5, 30)
    assert (job.rate, job.concurrency, job.max_attempts, job.timeout) == (10, 10, 5, 30)
    assert (listing.rate, listing.max_attempts, listing.timeout) == (10, 5, 30)


def test_values_are_trimmed_and_control_characters_refused():
    """A trailing newline is trimmed; a line break inside a value is a usage error, not a crash."""
    settings = load_api_settings(BASE | {"AEP_ACCESS_TOKEN": "tok-secret\n", "AEP_ORG_ID": " o "})
    assert settings.credentials == Secret("tok-secret")
    assert settings.org_id == "o"
    with pytest.raises(UsageError, match="AEP_ACCESS_TOKEN contains a control character"):
        load_api_settings(BASE | {"AEP_ACCESS_TOKEN": "tok\nX-Evil: 1"})
    with pytest.raises(UsageError, match="--org contains a control character"):
        load_api_settings(BASE, org="ORG\r\nX: 1")
