"""Loading the services' configuration."""

import yaml

from services.common.config import load_config


def test_the_config_takes_the_environment_and_leaves_other_yaml_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("RELIEF_TEST_URI", "amqp://broker:5672/")
    path = tmp_path / "config.yaml"
    path.write_text("AMQP_URI: ${RELIEF_TEST_URI}\nLEVEL: ${RELIEF_TEST_UNSET:INFO}\n")
    assert load_config(str(path)) == {"AMQP_URI": "amqp://broker:5672/", "LEVEL": "INFO"}
    # any other YAML read in the same process (a compose file...) is read as written
    assert yaml.safe_load("x: ${RELIEF_TEST_URI}") == {"x": "${RELIEF_TEST_URI}"}
