"""The database: models and migrations agree; tokens are encrypted at rest and bound to their row."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect, select, text

from pd_app.db import get_session
from pd_app.migrate import downgrade, heads, upgrade
from pd_app.models import Base, Installation
from pd_app.tokens.cipher import TokenCipher, TokenDecryptError, cipher


def test_models_and_migrations_agree(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrations_run_from_empty_to_head_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) >= {"installations", "partner_keys", "oauth_states"}
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert {version} == heads()
    downgrade(url, "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()


def _installation(company_id=1, user_id=2):
    return Installation(company_id=company_id, user_id=user_id, api_domain="https://x.pipedrive.com")


def test_cipher_round_trip_and_binding():
    c = TokenCipher((Fernet.generate_key().decode(),))
    mine, other = _installation(1, 2), _installation(1, 3)
    sealed = c.encrypt(mine, "access_token", "secret-token")
    assert "secret-token" not in sealed
    assert c.decrypt(mine, "access_token", sealed) == "secret-token"
    with pytest.raises(TokenDecryptError):
        c.decrypt(other, "access_token", sealed)  # another user's row
    with pytest.raises(TokenDecryptError):
        c.decrypt(mine, "refresh_token", sealed)  # another column of the same row
    with pytest.raises(TokenDecryptError):
        c.decrypt(mine, "access_token", None)


def test_cipher_with_a_retired_key_still_decrypts_and_rotates():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    inst = _installation()
    sealed = TokenCipher((old,)).encrypt(inst, "access_token", "t")
    both = TokenCipher((new, old))
    assert both.decrypt(inst, "access_token", sealed) == "t"
    rotated = both.rotate(sealed)
    assert TokenCipher((new,)).decrypt(inst, "access_token", rotated) == "t"
    with pytest.raises(TokenDecryptError):
        TokenCipher((new,)).decrypt(inst, "access_token", sealed)


def test_database_holds_no_plaintext_token_and_moved_ciphertext_fails(app, installer, sandbox, database_url):
    installer.install(user_id=2001)
    installer.install(user_id=2002)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM installations")).mappings().all()
    engine.dispose()
    dump = repr([dict(r) for r in rows])
    assert len(rows) == 2
    with app.app_context():
        session = get_session()
        ada, sam = session.scalars(select(Installation).order_by(Installation.user_id)).all()
        access = cipher().decrypt(ada, "access_token", ada.access_token_enc)
        refresh = cipher().decrypt(ada, "refresh_token", ada.refresh_token_enc)
        assert len(access) >= 200 and refresh
        assert access not in dump and refresh not in dump
        # Copy Ada's ciphertext into Sam's row: it must not decrypt there.
        sam.access_token_enc = ada.access_token_enc
        session.commit()
        with pytest.raises(TokenDecryptError):
            cipher().decrypt(sam, "access_token", sam.access_token_enc)


def test_a_failed_statement_names_no_bound_value(app):
    # hide_parameters=True: an error (and so any log line or traceback made from it) shows the SQL text, never
    # the values bound to it, here an email and a ciphertext standing in for a token.
    from sqlalchemy.exc import IntegrityError

    secret = "gAAAAA-pretend-ciphertext-" + "x" * 40
    with app.app_context():
        session = get_session()
        session.add(Installation(company_id=1, user_id=2, api_domain="https://a.pipedrive.com"))
        session.commit()
        session.add(
            Installation(
                company_id=1,
                user_id=2,
                api_domain="https://a.pipedrive.com",
                user_email="hidden@example.com",
                access_token_enc=secret,
            )
        )
        with pytest.raises(IntegrityError) as info:
            session.commit()
        session.rollback()
    message = str(info.value)
    assert "installations" in message
    assert secret not in message and "hidden@example.com" not in message
    assert "hidden due to hide_parameters" in message
