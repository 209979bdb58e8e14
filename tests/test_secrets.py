"""Passwords in storage URLs are masked wherever they would be saved or sent."""

from __future__ import annotations

import pytest

from resnet_lab.secrets import mask_secrets, without_masked_password


@pytest.mark.parametrize(
    "text, masked",
    [
        ("postgresql+psycopg2://user:s3cr%40t@dbhost:5432/optuna", "postgresql+psycopg2://user:***@dbhost:5432/optuna"),
        ("hydra.sweeper.storage=mysql://u:pw@h/db", "hydra.sweeper.storage=mysql://u:***@h/db"),
        ("postgresql://u@h/db?sslmode=require&password=abc", "postgresql://u@h/db?sslmode=require&password=***"),
        ("logger.api_key=0123abcd", "logger.api_key=***"),
    ],
)
def test_passwords_and_tokens_are_masked(text, masked):
    assert mask_secrets(text) == masked


@pytest.mark.parametrize("text", ["postgresql://user@host/db", "sqlite:////tmp/a:b.db", "journal:///tmp/study.log", "scheduler.max_lr=0.1"])
def test_text_without_a_secret_is_left_alone(text):
    assert mask_secrets(text) == text


def test_a_masked_url_reconnects_through_the_drivers_own_password_sources():
    assert without_masked_password(mask_secrets("postgresql://u:pw@h/db")) == "postgresql://u@h/db"
