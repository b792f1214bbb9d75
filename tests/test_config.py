"""Settings come from the environment only, and a bad value stops the process early."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ccadmin import config
from ccadmin.config import ConfigError


def test_defaults_are_the_local_embedded_setup():
    settings = config.load(environ={})

    assert settings.instance_path == config.DEFAULT_INSTANCE
    assert settings.database_url == f"sqlite:///{config.DEFAULT_INSTANCE / 'ccadmin.db'}"
    assert settings.redis_url is None
    assert settings.embedded_redis
    assert settings.effective_redis_url == f"unix://{config.DEFAULT_INSTANCE / 'redis.sock'}"
    assert settings.api_keys == ()
    assert settings.admin_email is None
    assert settings.admin_password is None
    assert settings.admin_port == 5000
    assert settings.api_port == 8000
    assert settings.api_threads == 8
    assert settings.api_processes >= 1
    assert settings.api_redis_timeout == 0.25


def test_instance_path_moves_the_sqlite_file_and_the_redis_socket(tmp_path):
    settings = config.load(environ={"CCADMIN_INSTANCE_PATH": str(tmp_path)})

    assert settings.instance_path == Path(tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'ccadmin.db'}"
    assert settings.redis_socket_path == tmp_path / "redis.sock"


def test_heroku_style_postgres_url_is_rewritten():
    settings = config.load(
        environ={"DATABASE_URL": "postgres://u:p@db.example:5432/cc", "SECRET_KEY": "s" * 40}
    )

    assert settings.database_url == "postgresql+psycopg2://u:p@db.example:5432/cc"


def test_postgresql_url_without_a_driver_gets_the_installed_one():
    settings = config.load(
        environ={"DATABASE_URL": "postgresql://u@127.0.0.1/cc", "SECRET_KEY": "s" * 40}
    )

    assert settings.database_url == "postgresql+psycopg2://u@127.0.0.1/cc"


def test_postgresql_url_naming_a_driver_is_kept_as_given():
    url = "postgresql+psycopg://u@127.0.0.1/cc"
    settings = config.load(environ={"DATABASE_URL": url, "SECRET_KEY": "s" * 40})

    assert settings.database_url == url


def test_normalized_postgresql_url_loads_an_installed_driver():
    import sqlalchemy

    url = config.normalize_database_url("postgres://postgres@127.0.0.1:5432/postgres")
    engine = sqlalchemy.create_engine(url)

    assert engine.dialect.driver == "psycopg2"
    engine.dispose()


@pytest.mark.parametrize(
    "database_url", [None, "sqlite:////tmp/cc.db", "postgresql://postgres@127.0.0.1/cc"]
)
@pytest.mark.parametrize("secret", [None, ""])
def test_no_database_gives_a_built_in_session_key(tmp_path, database_url, secret):
    environ = {"CCADMIN_INSTANCE_PATH": str(tmp_path)}
    if database_url:
        environ["DATABASE_URL"] = database_url
    if secret is not None:
        environ["SECRET_KEY"] = secret
    settings = config.load(environ=environ)
    assert settings.secret_key is None
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        settings.require_secret_key()


def test_the_key_make_run_generated_is_read_from_the_instance_folder(tmp_path):
    (tmp_path / config.SECRET_KEY_FILE).write_text("generated-key\n")
    settings = config.load(environ={"CCADMIN_INSTANCE_PATH": str(tmp_path)})
    assert settings.require_secret_key() == "generated-key"


def test_secret_key_from_the_environment_wins(tmp_path):
    (tmp_path / config.SECRET_KEY_FILE).write_text("generated-key\n")
    settings = config.load(
        environ={"SECRET_KEY": "a-long-random-value", "CCADMIN_INSTANCE_PATH": str(tmp_path)}
    )

    assert settings.secret_key == "a-long-random-value"


def test_the_instance_folder_is_made_owner_only(tmp_path):
    folder = tmp_path / "instance"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    config.private_directory(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    config.private_directory(tmp_path / "new" / "instance")
    assert (tmp_path / "new" / "instance").stat().st_mode & 0o777 == 0o700


def test_redis_url_turns_the_embedded_redis_off():
    settings = config.load(environ={"REDIS_URL": "redis://127.0.0.1:6379/3"})

    assert not settings.embedded_redis
    assert settings.effective_redis_url == "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize(
    "name",
    ["ADMIN_PORT", "API_PORT", "API_THREADS", "API_CONNECTION_LIMIT", "API_PROCESSES"],
)
def test_integer_settings_reject_text_naming_the_variable(name):
    with pytest.raises(ConfigError, match=name):
        config.load(environ={name: "eight"})


@pytest.mark.parametrize("name", ["API_THREADS", "API_PROCESSES", "ADMIN_PORT"])
def test_integer_settings_reject_zero_naming_the_variable(name):
    with pytest.raises(ConfigError, match=name):
        config.load(environ={name: "0"})


def test_redis_timeout_below_its_floor_is_rejected():
    with pytest.raises(ConfigError, match="API_REDIS_TIMEOUT_MS"):
        config.load(environ={"API_REDIS_TIMEOUT_MS": "1"})


def test_integer_settings_are_read():
    settings = config.load(
        environ={
            "ADMIN_PORT": "5050",
            "API_PORT": "8080",
            "API_THREADS": "16",
            "API_CONNECTION_LIMIT": "5000",
            "API_PROCESSES": "3",
            "API_REDIS_TIMEOUT_MS": "100",
        }
    )

    assert settings.admin_port == 5050
    assert settings.api_port == 8080
    assert settings.api_threads == 16
    assert settings.api_connection_limit == 5000
    assert settings.api_processes == 3
    assert settings.api_redis_timeout == 0.1


def test_api_listens_on_every_interface_unless_told():
    assert config.load(environ={}).api_host == "0.0.0.0"
    assert config.load(environ={"API_HOST": "127.0.0.1"}).api_host == "127.0.0.1"


def test_port_is_used_when_api_port_is_unset():
    assert config.load(environ={"PORT": "9123"}).api_port == 9123


def test_api_port_wins_over_port():
    assert config.load(environ={"PORT": "9123", "API_PORT": "8123"}).api_port == 8123


def test_a_bad_port_is_reported_by_the_name_that_was_set():
    with pytest.raises(ConfigError, match="^PORT must be an integer"):
        config.load(environ={"PORT": "web"})
    with pytest.raises(ConfigError, match="^API_PORT must be an integer"):
        config.load(environ={"PORT": "80", "API_PORT": "web"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("", ()),
        ("one", ("one",)),
        ("one,two", ("one", "two")),
        (" one , two ,", ("one", "two")),
        (",,", ()),
    ],
)
def test_api_keys_are_a_comma_separated_list(raw, expected):
    environ = {} if raw is None else {"CCADMIN_API_KEYS": raw}

    assert config.load(environ=environ).api_keys == expected


def test_first_admin_settings_are_read():
    settings = config.load(
        environ={"CCADMIN_ADMIN_EMAIL": "ops@example.com", "CCADMIN_ADMIN_PASSWORD": "pw"}
    )

    assert settings.admin_email == "ops@example.com"
    assert settings.admin_password == "pw"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("off", False)],
)
def test_booleans_are_parsed_strictly(raw, expected):
    assert config.load(environ={"API_METRICS": raw}).api_metrics is expected


def test_unset_or_blank_settings_take_the_default():
    assert config.load(environ={"API_METRICS": " ", "API_THREADS": ""}).api_metrics is True
    assert config.load(environ={"API_THREADS": ""}).api_threads == 8


@pytest.mark.parametrize("raw", ["ture", "2", "enabled"])
def test_bad_booleans_are_rejected_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="API_PIN_CPUS"):
        config.load(environ={"API_PIN_CPUS": raw})


def test_log_level_is_a_known_level():
    assert config.load(environ={}).log_level == "INFO"
    assert config.load(environ={"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        config.load(environ={"LOG_LEVEL": "verbose"})


def test_the_admin_listens_on_port_when_admin_port_is_unset():
    assert config.load(environ={"PORT": "9123"}).admin_port == 9123
    assert config.load(environ={"PORT": "9123", "ADMIN_PORT": "5050"}).admin_port == 5050


def test_every_variable_is_documented():
    table = (config.PROJECT_ROOT / "docs" / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`") for line in table.splitlines() if line[:3] == "| `"
    }
    names = {name for declaration in config.declared() for name in declaration.metadata["env"]}
    assert names - rows == set()
    assert rows - names == set()


def test_nothing_but_config_reads_the_environment():
    readers = set()
    for folder in ("ccadmin", "workers"):
        for source in (config.PROJECT_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in ("environ", "getenv")
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "os"
                ):
                    readers.add(str(source.relative_to(config.PROJECT_ROOT)))
    assert readers == {"ccadmin/config.py"}


def test_settings_are_immutable():
    settings = config.load(environ={})

    with pytest.raises(AttributeError):
        settings.admin_port = 1  # type: ignore[misc]
