"""Every setting the code reads is set by the Bicep, secrets come from Key Vault, and nothing the Flex
Consumption plan refuses is set."""

from __future__ import annotations

import json
import re

from deploy_files import (
    BICEP_DIR,
    KEY_VAULT_REFERENCE,
    LOCAL_SETTINGS_EXAMPLE,
    app_settings,
    parse_bicep,
    resource_config,
)
from pydantic import AliasChoices

from opus.config import Settings

# Settings read by function_app.py and the Functions runtime (host.json `%NAME%`, trigger connections).
FUNCTIONS_RUNTIME_SETTINGS = {
    "FEEDS_FILE", "PLANNING_TIMEOUT_S", "CONSOLIDATOR_SLICE_S", "PAGE_ATTEMPTS", "CORS_ORIGINS", "NIVODA_STAGING",
    "OPUS_SCHEDULE", "OPUS_HOUSEKEEPING_SCHEDULE", "OPUS_TASK_HUB", "WATERMARK_CONTAINER",
    "ServiceBusConnection__fullyQualifiedNamespace", "AzureWebJobsStorage__accountName",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}

# Left unset on purpose; each must be a real setting, and none may be set after all.
LEFT_UNSET = {
    "PARTITION_PAGE_CAP": "unset, the cap scales with each partition's estimate (3x + 100 pages)",
}

# The Flex Consumption plan sets these itself (runtime in functionAppConfig, package from the deployment
# container) and rejects a site that carries them as app settings.
REFUSED_ON_FLEX = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_NODE_DEFAULT_VERSION", "AzureWebJobsStorage",
}

SECRET_SETTINGS = {
    "DATABASE_URL": "database-url",
    "DATABASE_PASSWORD": "database-password",
    "NIVODA_PASSWORD": "nivoda-password",
    "HMAC_SECRETS": "hmac-secrets",
    "RESEND_API_KEY": "resend-api-key",
}


def _environment_names(field_name: str) -> set[str]:
    """The names pydantic-settings reads a field under: its own, or its aliases when it has any."""
    field = Settings.model_fields[field_name]
    alias = field.validation_alias or field.alias
    if alias is None:
        return {field_name.upper()}
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    return {choice.upper() for choice in choices if isinstance(choice, str)}


def _local_settings_names() -> set[str]:
    """Values of local.settings.example.json, when the file exists (it is written alongside function_app.py)."""
    if not LOCAL_SETTINGS_EXAMPLE.exists():
        return set()
    return set(json.loads(LOCAL_SETTINGS_EXAMPLE.read_text(encoding="utf-8"))["Values"])


def _is_set(name: str, configured: set[str]) -> bool:
    # Settings are read case-insensitively; `X__accountName` is the identity-based form of connection `X`.
    upper = {c.upper() for c in configured}
    return name.upper() in upper or any(c.startswith(name.upper() + "__") for c in upper)


def test_every_settings_field_is_set() -> None:
    configured = set(app_settings())
    missing = sorted(
        field for field in Settings.model_fields
        if not any(_is_set(n, configured) or n in LEFT_UNSET for n in _environment_names(field))
    )
    assert not missing, f"opus/config.py fields without an app setting: {missing}"


def test_every_runtime_and_local_setting_is_set() -> None:
    configured = set(app_settings())
    wanted = (FUNCTIONS_RUNTIME_SETTINGS | _local_settings_names()) - set(LEFT_UNSET) - {"FUNCTIONS_WORKER_RUNTIME"}
    missing = sorted(name for name in wanted if not _is_set(name, configured))
    assert not missing, f"settings the Functions app reads that the Bicep does not set: {missing}"


def test_settings_left_unset_are_known_and_unset() -> None:
    known = {n for f in Settings.model_fields for n in _environment_names(f)} | FUNCTIONS_RUNTIME_SETTINGS
    assert set(LEFT_UNSET) <= known, f"unknown settings listed as unset: {sorted(set(LEFT_UNSET) - known)}"
    assert not set(LEFT_UNSET) & set(app_settings()), "a setting listed as unset is set"


def test_nothing_the_flex_plan_refuses_is_set() -> None:
    refused = sorted(REFUSED_ON_FLEX & set(app_settings()))
    assert not refused, f"Flex Consumption refuses these app settings: {refused}"


def test_no_connection_strings_where_identity_works() -> None:
    configured = set(app_settings())
    assert "AzureWebJobsStorage__accountName" in configured
    assert "ServiceBusConnection__fullyQualifiedNamespace" in configured
    assert "ServiceBusConnection" not in configured


def test_secrets_are_key_vault_references_to_secrets_the_vault_holds() -> None:
    settings = app_settings()
    keyvault = parse_bicep(BICEP_DIR / "modules" / "keyvault.bicep")
    held = {resource_config(resource)["name"] for resource in keyvault["resources"].values()
            if resource["type"] == "Microsoft.KeyVault/vaults/secrets"}
    for name, secret in SECRET_SETTINGS.items():
        match = KEY_VAULT_REFERENCE.match(str(settings[name]))
        assert match, f"{name} must be a Key Vault reference, is {settings[name]!r}"
        assert match.group(1) == secret
        assert secret in held, f"keyvault.bicep does not hold {secret}"


def test_no_secret_value_is_written_into_an_app_setting() -> None:
    plain = {name: value for name, value in app_settings().items() if isinstance(value, str)}
    for name, value in plain.items():
        assert not re.search(r"postgresAdminPassword|nivodaPassword|hmacSecrets|resendApiKey", value), name


def test_page_attempts_give_up_before_service_bus_dead_letters() -> None:
    # Our own attempt count (partition_progress) must decide, not the transport's delivery count.
    params = parse_bicep(BICEP_DIR / "main.bicep")["parameters"]
    assert params["pageAttempts"]["default"] < params["queueMaxDeliveries"]["default"]
