"""The test OpenID Connect provider, driven by a plain HTTP client as a relying party would.

The sign-in tests rely on it, so it has to refuse what a real provider refuses
and sign what a real client can verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from common.oidc_provider import OidcProvider, oidc_provider  # noqa: F401  (fixture)
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import KeySet

CALLBACK = "http://127.0.0.1:9/auth/callback"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def header(token: str) -> dict:
    """A JWT's header, unverified."""
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class Flow:
    """One sign-in as a relying party runs it: its own state, nonce and PKCE verifier."""

    def __init__(self, provider: OidcProvider) -> None:
        self.provider = provider
        self.http = requests.Session()
        self.state = secrets.token_urlsafe(16)
        self.nonce = secrets.token_urlsafe(16)
        self.verifier = secrets.token_urlsafe(48)

    def params(self, **changes: str | None) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.provider.client_id,
            "redirect_uri": CALLBACK,
            "scope": "openid email profile groups",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": s256(self.verifier),
            "code_challenge_method": "S256",
            **changes,
        }
        return {name: value for name, value in params.items() if value is not None}

    def sign_in(self, username: str = "ann", **changes: str | None) -> requests.Response:
        """The login form posted as a browser would: hidden fields plus the username."""
        url = f"{self.provider.issuer}/authorize"
        page = self.http.get(url, params=self.params(**changes), allow_redirects=False)
        assert page.status_code == 200, page.text
        fields = dict(
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
        )
        return self.http.post(url, data={**fields, "username": username}, allow_redirects=False)

    def code(self, username: str = "ann") -> str:
        answer = self.sign_in(username)
        assert answer.status_code == 302, answer.text
        query = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert query["state"] == [self.state]
        return query["code"][0]

    def exchange(
        self, code: str, auth: str = "client_secret_post", secret: str | None = None, **changes: str
    ) -> requests.Response:
        """The token request, the client authenticating one way or the other."""
        secret = secret or self.provider.client_secret
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": self.verifier,
            **changes,
        }
        basic = None
        if auth == "client_secret_post":
            form |= {"client_id": self.provider.client_id, "client_secret": secret}
        else:
            basic = (self.provider.client_id, secret)
        return self.http.post(f"{self.provider.issuer}/token", data=form, auth=basic)

    def id_token(self) -> str:
        answer = self.exchange(self.code())
        assert answer.status_code == 200, answer.text
        return answer.json()["id_token"]

    def jwks(self) -> KeySet:
        return KeySet.import_key_set(self.http.get(f"{self.provider.issuer}/jwks").json())


@pytest.fixture
def provider(oidc_provider: OidcProvider) -> OidcProvider:  # noqa: F811
    oidc_provider.redirect_uris.append(CALLBACK)
    oidc_provider.add_user("ann", email="ann@example.com", name="Ann", groups=["cc-editors"])
    return oidc_provider


def test_discovery_document_names_the_endpoints(provider: OidcProvider) -> None:
    document = requests.get(f"{provider.issuer}/.well-known/openid-configuration").json()

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", provider.issuer)
    assert document["issuer"] == provider.issuer
    assert document["authorization_endpoint"] == f"{provider.issuer}/authorize"
    assert document["token_endpoint"] == f"{provider.issuer}/token"
    assert document["jwks_uri"] == f"{provider.issuer}/jwks"
    assert document["userinfo_endpoint"] == f"{provider.issuer}/userinfo"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


def test_authorize_page_is_a_login_form_carrying_the_request(provider: OidcProvider) -> None:
    flow = Flow(provider)
    page = flow.http.get(f"{provider.issuer}/authorize", params=flow.params())

    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert 'name="username" id="username"' in page.text
    assert '<button type="submit" id="sign-in">Sign in</button>' in page.text
    assert f'<input type="hidden" name="state" value="{flow.state}">' in page.text
    assert f'<input type="hidden" name="nonce" value="{flow.nonce}">' in page.text


def test_unknown_username_gets_the_form_again(provider: OidcProvider) -> None:
    answer = Flow(provider).sign_in("mallory")

    assert answer.status_code == 401
    assert "Unknown user" in answer.text and 'id="sign-in"' in answer.text


@pytest.mark.parametrize("auth", ["client_secret_post", "client_secret_basic"])
def test_code_flow_issues_an_id_token_that_verifies_against_the_jwks(
    provider: OidcProvider, auth: str
) -> None:
    flow = Flow(provider)
    answer = flow.exchange(flow.code(), auth=auth)
    assert answer.status_code == 200, answer.text

    keys = flow.jwks()
    token = jwt.decode(answer.json()["id_token"], keys, algorithms=["RS256"])
    claims = token.claims
    assert token.header["kid"] == keys.keys[0].kid
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == provider.client_id
    assert claims["nonce"] == flow.nonce
    assert claims["email"] == "ann@example.com"
    assert claims["groups"] == ["cc-editors"]
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["iat"] - time.time()) < 5

    assert claims["sub"] and claims["sub"] != "ann"

    userinfo = flow.http.get(
        f"{provider.issuer}/userinfo",
        headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["name"] == "Ann"


def test_code_is_refused_with_the_wrong_verifier_or_secret_or_twice(
    provider: OidcProvider,
) -> None:
    flow = Flow(provider)
    code = flow.code()

    wrong_verifier = flow.exchange(code, code_verifier=secrets.token_urlsafe(48))
    wrong_secret = flow.exchange(code, auth="client_secret_post", secret="not-the-secret")
    assert (wrong_verifier.status_code, wrong_verifier.json()["error"]) == (400, "invalid_grant")
    assert wrong_secret.json()["error"] == "invalid_client"

    assert flow.exchange(code).status_code == 200
    assert flow.exchange(code).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "changes",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"nonce": None},
    ],
    ids=["no-pkce", "plain-pkce", "pkce-method-missing", "no-nonce"],
)
def test_authorize_refuses_a_request_without_s256_pkce_or_nonce(
    provider: OidcProvider, changes: dict[str, str | None]
) -> None:
    flow = Flow(provider)
    answer = flow.http.get(
        f"{provider.issuer}/authorize", params=flow.params(**changes), allow_redirects=False
    )

    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == [flow.state]


def test_redirect_uri_must_be_registered_exactly(provider: OidcProvider) -> None:
    flow = Flow(provider)
    other = f"{CALLBACK}/elsewhere"
    refused = flow.http.get(
        f"{provider.issuer}/authorize",
        params=flow.params(redirect_uri=other),
        allow_redirects=False,
    )
    assert refused.status_code == 400 and "Location" not in refused.headers

    provider.redirect_uris.append(other)
    assert flow.sign_in(redirect_uri=other).headers["Location"].startswith(other + "?")


def test_rotation_publishes_only_the_new_key(provider: OidcProvider) -> None:
    flow = Flow(provider)
    cached = flow.jwks()
    assert provider.jwks_requests == 1

    provider.rotate_keys()
    id_token = Flow(provider).id_token()

    with pytest.raises(InvalidKeyIdError):  # a client holding the old set must refetch
        jwt.decode(id_token, cached, algorithms=["RS256"])
    fresh = flow.jwks()
    assert provider.jwks_requests == 2
    assert [key.kid for key in fresh.keys] != [key.kid for key in cached.keys]
    assert len(fresh.keys) == 1
    jwt.decode(id_token, fresh, algorithms=["RS256"])


def test_foreign_key_signs_under_the_published_kid(provider: OidcProvider) -> None:
    provider.sign_with_foreign_key()
    id_token = Flow(provider).id_token()
    keys = Flow(provider).jwks()

    assert header(id_token)["kid"] == keys.keys[0].kid
    with pytest.raises(BadSignatureError):
        jwt.decode(id_token, keys, algorithms=["RS256"])

    provider.sign_with_foreign_key(False)
    jwt.decode(Flow(provider).id_token(), keys, algorithms=["RS256"])


def test_overrides_are_applied_last(provider: OidcProvider) -> None:
    provider.id_token_overrides = {"nonce": "wrong", "exp": 1, "iat": 0}
    flow = Flow(provider)
    claims = jwt.decode(flow.id_token(), flow.jwks(), algorithms=["RS256"]).claims

    assert (claims["nonce"], claims["exp"], claims["iat"]) == ("wrong", 1, 0)
