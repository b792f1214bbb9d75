"""An OpenID Connect provider of the test's own on loopback, to sign in against for real.

Authlib's server components speak the protocol (authorization code with PKCE,
client authentication, RS256 ID tokens, userinfo); this module keeps the one
client, the users, codes, tokens and keys in memory, and adds the switches a
test needs to make the provider misbehave: a key rotation, forced claims, a
signature by a key nobody published.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    TokenMixin,
    list_to_scope,
    scope_to_list,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.datastructures import MultiDict
from werkzeug.serving import BaseWSGIServer, make_server

SCOPES = ["openid", "email", "profile", "groups"]
ID_TOKEN_LIFETIME = 300
# RFC 6749 recommends at most ten minutes.
CODE_LIFETIME = 600


def _new_key() -> RSAKey:
    return RSAKey.generate_key(
        2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"}
    )


class OidcProvider:
    """One confidential client, users added by the test, keys of its own; see the module."""

    def __init__(
        self,
        client_id: str = "ccadmin",
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(32)
        # Read on every request, so a test may append its callback after start().
        self.redirect_uris: list[str] = redirect_uris if redirect_uris is not None else []
        self.id_token_overrides: dict[str, Any] = {}
        self.jwks_requests = 0
        self._users: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self._signing_key = _new_key()
        self._foreign_key: RSAKey | None = None
        self._foreign_on = False
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app = self._create_app()

    # The test's side

    @property
    def issuer(self) -> str:
        assert self._server is not None, "the provider has not been started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> OidcProvider:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        # A short poll interval, so stop() does not wait half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="oidc-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._thread = None

    def add_user(self, username: str, **claims: Any) -> None:
        """A user who may sign in with just the username; claims go into ID tokens and userinfo."""
        claims.setdefault("sub", str(uuid.uuid5(uuid.NAMESPACE_URL, f"oidc-user:{username}")))
        claims.setdefault("preferred_username", username)
        self._users[username] = claims

    def rotate_keys(self) -> None:
        """Sign with a new key under a new `kid`; the JWKS drops the old one, as in a rollover."""
        self._signing_key = _new_key()

    def sign_with_foreign_key(self, on: bool = True) -> None:
        """Sign ID tokens with an unpublished key under the published `kid`: the signature fails."""
        if on and self._foreign_key is None:
            self._foreign_key = _new_key()
        self._foreign_on = on

    # The provider's side, called by the Authlib classes below

    def user_claims(self, username: str) -> dict[str, Any]:
        return dict(self._users[username])

    def signing(self) -> tuple[str, RSAKey]:
        """(published kid, key that signs), read together so a rotation cannot split them."""
        key = self._signing_key
        return key.kid or "", (self._foreign_key if self._foreign_on else None) or key

    def query_client(self, client_id: str) -> _Client | None:
        return _Client(self) if client_id == self.client_id else None

    def save_token(self, token: dict[str, Any], oauth_request) -> None:
        self._tokens[token["access_token"]] = _Token(
            client=oauth_request.client,
            username=oauth_request.user,
            scope=token.get("scope", ""),
            expires_at=time.time() + token["expires_in"],
        )

    def find_token(self, access_token: str) -> _Token | None:
        return self._tokens.get(access_token)

    def save_code(self, code: _Code) -> None:
        self._codes[code.code] = code

    def find_code(self, code: str, client_id: str) -> _Code | None:
        found = self._codes.get(code)
        if found and found.client_id == client_id and time.time() < found.expires_at:
            return found
        return None

    def delete_code(self, code: str) -> None:
        self._codes.pop(code, None)

    def nonce_pending(self, client_id: str, nonce: str) -> bool:
        return any(c.client_id == client_id and c.nonce == nonce for c in self._codes.values())

    # The web application

    def _create_app(self) -> Flask:
        app = Flask(__name__)
        app.config["OAUTH2_SCOPES_SUPPORTED"] = SCOPES
        server = AuthorizationServer(
            app, query_client=self.query_client, save_token=self.save_token
        )
        server.register_grant(_CodeGrant, [_S256Required(), _OpenIDCode(self)])
        protector = ResourceProtector()
        protector.register_token_validator(_BearerTokens(self))
        server.register_endpoint(_UserInfo(resource_protector=protector))
        # Grants reach the provider's storage through the server they are given.
        server.provider = self

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Response:
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=f"{self.issuer}/authorize",
                token_endpoint=f"{self.issuer}/token",
                jwks_uri=f"{self.issuer}/jwks",
                userinfo_endpoint=f"{self.issuer}/userinfo",
                response_types_supported=["code"],
                grant_types_supported=["authorization_code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                code_challenge_methods_supported=["S256"],
                token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
                scopes_supported=SCOPES,
            )

        @app.get("/jwks")
        def jwks() -> Response:
            with self._lock:
                self.jwks_requests += 1
            return jsonify(keys=[self._signing_key.as_dict(private=False)])

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Response:
            username = request.form.get("username", "") if request.method == "POST" else ""
            end_user = username if username in self._users else None
            try:
                grant = server.get_consent_grant(end_user=end_user)
            except OAuth2Error as error:
                # With a verified redirect_uri this redirects back with the error, as the spec says.
                return server.handle_error_response(None, error)
            if request.method == "GET":
                return self._login_page(request.args)
            if end_user is None:
                return self._login_page(request.values, error=f"Unknown user {username!r}.")
            return server.create_authorization_response(grant_user=end_user, grant=grant)

        @app.post("/token")
        def token() -> Response:
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo() -> Response:
            return server.create_endpoint_response("userinfo")

        return app

    @staticmethod
    def _login_page(params: MultiDict, error: str | None = None) -> Response:
        """The sign-in form; it posts to the bare path, the request riding along hidden."""
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in params.items(multi=True)
            if name != "username"
        )
        alert = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
        page = (
            "<!doctype html><html><head><title>Sign in</title></head><body>"
            f"<h1>Test identity provider</h1>{alert}"
            '<form method="post" action="/authorize">'
            '<label for="username">Username</label>'
            '<input name="username" id="username" autocomplete="username">'
            f'{hidden}<button type="submit" id="sign-in">Sign in</button>'
            "</form></body></html>"
        )
        return Response(page, status=401 if error else 200, mimetype="text/html")


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class _Token(TokenMixin):
    client: _Client
    username: str
    scope: str
    expires_at: float

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at - time.time()))

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> str:
        return self.username

    def get_client(self) -> _Client:
        return self.client


class _Client(ClientMixin):
    """The provider's one client, read live so the test's changes apply at once."""

    # No signed userinfo: Authlib's UserInfoEndpoint looks for it here.
    client_metadata: dict[str, Any] = {}

    def __init__(self, provider: OidcProvider) -> None:
        self.provider = provider
        self.client_id = provider.client_id

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # OpenID Connect requires redirect_uri on every request.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return list_to_scope([s for s in scope_to_list(scope) or [] if s in SCOPES])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.provider.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.provider.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class _CodeGrant(AuthorizationCodeGrant):
    @property
    def provider(self) -> OidcProvider:
        return self.server.provider

    def save_authorization_code(self, code: str, request) -> None:
        data = request.payload.data
        self.provider.save_code(
            _Code(
                code=code,
                client_id=request.client.get_client_id(),
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope,
                username=request.user,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=int(time.time()),
                expires_at=time.time() + CODE_LIFETIME,
            )
        )

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        return self.provider.find_code(code, client.get_client_id())

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        self.provider.delete_code(authorization_code.code)

    def authenticate_user(self, authorization_code: _Code) -> str:
        return authorization_code.username


class _S256Required(CodeChallenge):
    """PKCE with S256 on every authorization request.

    Authlib's `required` insists only that public clients send a verifier; this
    client has a secret and must still use PKCE, as OAuth 2.1 asks. A missing
    method would mean "plain", which is not offered.
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Unsupported 'code_challenge_method'")
        super().validate_code_challenge(grant, redirect_uri)


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: OidcProvider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request) -> bool:
        return self.provider.nonce_pending(request.payload.client_id, nonce)

    def get_client_algorithm(self, client: _Client) -> str:
        return "RS256"

    def get_encode_header(self, client: _Client) -> dict[str, str]:
        kid, _ = self.provider.signing()
        return {"alg": "RS256", "kid": kid}

    def resolve_client_private_key(self, client: _Client) -> RSAKey:
        _, key = self.provider.signing()
        return key

    def get_client_claims(self, client: _Client) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.provider.issuer,
            "aud": client.get_client_id(),
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
        }

    def generate_user_info(self, user: str, scope: str) -> dict[str, Any]:
        # Authlib merges this into the ID token last, so the overrides win over every claim.
        return {**self.provider.user_claims(user), **self.provider.id_token_overrides}


class _UserInfo(UserInfoEndpoint):
    def generate_user_info(self, user: str, scope: str) -> dict[str, Any]:
        return self.server.provider.user_claims(user)

    def get_issuer(self) -> str:
        return self.server.provider.issuer


class _BearerTokens(BearerTokenValidator):
    def __init__(self, provider: OidcProvider) -> None:
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string: str) -> _Token | None:
        return self.provider.find_token(token_string)


@pytest.fixture
def oidc_provider() -> Iterator[OidcProvider]:
    """A started provider with no users and no redirect URIs yet; stopped after the test."""
    provider = OidcProvider().start()
    yield provider
    provider.stop()
