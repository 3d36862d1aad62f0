"""The Bicep templates, read as syntax trees: they parse, the modules fit together, and the
security properties the deployment relies on hold, so that an edit cannot drop them silently.

The Bicep compiler (`az bicep build`) and what-if run in GitHub Actions; here nothing reaches
Azure, so these tests check what can be known from the text itself.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from bicep_tree import INFRA, BicepFile, Expr, bicep_files, dig, named, syntax_problems, walk

REPO = INFRA.parent
MAIN = BicepFile.load(INFRA / "main.bicep")
CONTAINERS = "Microsoft.Storage/storageAccounts/blobServices/containers"

# Built-in role definition IDs (Azure built-in roles reference), by name.
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


# Every resource type and API version the templates use, each found in Azure/bicep-types-az
# (generated/<provider>/<api version>/types.md). The compiler warns BCP081 for a type without
# Bicep types (Microsoft.Web/sites/host has none: Azure/bicep#9355), and ci.yml fails on any
# warning: a new type or version goes here only once checked there.
TYPED = {
    ("Microsoft.Authorization/roleAssignments", "2022-04-01"),
    ("Microsoft.EventGrid/systemTopics", "2025-02-15"),
    ("Microsoft.EventGrid/systemTopics/eventSubscriptions", "2025-02-15"),
    ("Microsoft.Insights/actionGroups", "2023-01-01"),  # generated/monitor/.../2023-01-01
    ("Microsoft.Insights/components", "2020-02-02"),
    ("Microsoft.Insights/scheduledQueryRules", "2023-12-01"),  # generated/monitor/.../2023-12-01
    ("Microsoft.Insights/workbooks", "2023-06-01"),  # generated/applicationinsights/.../2023-06-01
    ("Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31"),
    ("Microsoft.OperationalInsights/workspaces", "2023-09-01"),
    ("Microsoft.Storage/storageAccounts", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/blobServices", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/blobServices/containers", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/queueServices", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/queueServices/queues", "2023-05-01"),
    ("Microsoft.Web/serverfarms", "2024-04-01"),
    ("Microsoft.Web/sites", "2024-04-01"),
    ("Microsoft.Web/sites/basicPublishingCredentialsPolicies", "2024-04-01"),
    ("Microsoft.Web/sites/config", "2024-04-01"),
}


def module(symbol: str) -> BicepFile:
    """A module of main.bicep with its parameters bound to what main.bicep passes."""
    return MAIN.module_file(symbol)


def only(resources: list) -> object:
    assert len(resources) == 1, resources
    return resources[0]


def test_every_bicep_file_parses_without_error_or_missing_nodes():
    files = bicep_files()
    assert {path.relative_to(INFRA).as_posix() for path in files} >= {
        "main.bicep", "app/identity.bicep", "app/storage.bicep", "app/monitoring.bicep",
        "app/function-app.bicep", "app/rbac.bicep", "app/eventgrid.bicep",
        "app/eventgrid-subscription.bicep", "app/alerts.bicep", "app/workbook.bicep",
    }
    problems = {path.name: syntax_problems(BicepFile.load(path).tree) for path in files}
    assert {name: found for name, found in problems.items() if found} == {}


def test_every_resource_type_has_bicep_types_so_no_bcp081():
    used = {(resource.type, resource.api_version)
            for path in bicep_files() for resource in BicepFile.load(path).resources}
    assert used <= TYPED, used - TYPED


def test_main_uses_every_module_and_passes_exactly_their_parameters():
    used = set()
    for symbol, mod in MAIN.modules.items():
        target = mod.target
        assert target.path.is_file(), f"{symbol}: {mod.source} does not exist"
        used.add(target.path)
        passed = set(mod.param_nodes())
        declared = set(target.params)
        required = {name for name, default in target.params.items() if default is None}
        assert passed <= declared, f"{symbol}: unknown parameters {passed - declared}"
        assert required <= passed, f"{symbol}: missing parameters {required - passed}"
    assert used == {path.resolve() for path in bicep_files() if path.parent.name == "app"}


def test_parameters_file_matches_main():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    required = {name for name, default in MAIN.params.items() if default is None}
    assert set(parameters) <= set(MAIN.params)
    assert required <= set(parameters)
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"


def test_storage_is_entra_only_private_and_tls12():
    storage = module("storage")
    account = only(storage.resources_of("Microsoft.Storage/storageAccounts")).value()
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    container = only(storage.resources_of(CONTAINERS))
    assert container.value()["properties"]["publicAccess"] == "None"
    names = storage.bindings["containerNames"]
    assert names[1:] == ["batches", "results", "deadletter"]


def test_plan_is_flex_consumption_and_app_is_linux_python_311():
    app = module("functionApp")
    plan = only(app.resources_of("Microsoft.Web/serverfarms")).value()
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    site = only(app.resources_of("Microsoft.Web/sites")).value()
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    runtime = dig(site, "properties", "functionAppConfig", "runtime")
    assert runtime == {"name": "python", "version": "3.11"}
    requires = re.search(r'requires-python = ">=(\d+\.\d+)"',
                         (REPO / "pyproject.toml").read_text())
    assert requires and requires[1] == runtime["version"]
    scale = dig(site, "properties", "functionAppConfig", "scaleAndConcurrency")
    assert set(scale) >= {"instanceMemoryMB", "maximumInstanceCount"}


def test_app_is_https_only_without_ftp_or_basic_auth_publishing():
    app = module("functionApp")
    site = only(app.resources_of("Microsoft.Web/sites")).value()
    assert site["properties"]["httpsOnly"] is True
    assert dig(site, "properties", "siteConfig", "ftpsState") == "Disabled"
    assert dig(site, "properties", "siteConfig", "minTlsVersion") == "1.2"
    policies = {r.value()["name"]: r.value()["properties"]["allow"]
                for r in app.resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies")}
    assert policies == {"ftp": False, "scm": False}


def test_deployment_storage_uses_the_user_assigned_identity():
    app = module("functionApp")
    site = only(app.resources_of("Microsoft.Web/sites")).value()
    storage = dig(site, "properties", "functionAppConfig", "deployment", "storage")
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    identity = storage["authentication"]["userAssignedIdentityResourceId"]
    assert identity == Expr("identity.outputs.id")


def app_settings() -> dict:
    config = only(module("functionApp").resources_of("Microsoft.Web/sites/config")).value()
    assert config["name"] == "appsettings"
    return config["properties"]


def test_host_storage_is_identity_based_with_no_connection_string():
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == Expr("identity.outputs.clientId")
    for service in ("blob", "queue"):
        uri = settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert uri == Expr(f"storage.properties.primaryEndpoints.{service}")
    # Flex Consumption: runtime and package live in functionAppConfig, not in app settings.
    forbidden = {"azurewebjobsstorage", "functions_worker_runtime", "functions_extension_version",
                 "website_run_from_package", "website_contentazurefileconnectionstring",
                 "deployment_storage_connection_string"}
    assert forbidden.isdisjoint(key.lower() for key in settings)


def test_no_template_holds_a_storage_connection_string_or_account_key():
    for path in bicep_files():
        tree = BicepFile.load(path).tree
        for node in walk(tree.root_node):
            if node.type == "object_property":
                key = named(node)[0].text.decode().strip("'")
                assert key.lower() != "azurewebjobsstorage", path
            if node.type == "string":
                assert "AccountKey=" not in node.text.decode(), path
            if node.type == "call_expression":
                function = named(node)[0].text.decode()
                if function.lower().endswith("listkeys"):
                    # Only the Functions host's keys (the blob extension's webhook key), by
                    # the host's resource ID: a storage account's listKeys() would be a key.
                    assert function == "listKeys", (path, function)
                    resource_id = named(named(node)[1])[0].text.decode()
                    assert resource_id == "'${functionApp.id}/host/default'", (path, resource_id)


def test_application_insights_takes_entra_id_authenticated_telemetry_only():
    monitoring = module("monitoring")
    component = only(monitoring.resources_of("Microsoft.Insights/components")).value()
    assert component["properties"]["DisableLocalAuth"] is True
    assert "WorkspaceResourceId" in component["properties"]
    settings = app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == Expr(
        "ClientId=${identity.outputs.clientId};Authorization=AAD"
    )
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings


def config_setting_names() -> set[str]:
    """The EMNIST_EDGE_* names shared/config.py reads (its _int/_str/_path/_float/_bool calls)."""
    tree = ast.parse((REPO / "shared" / "config.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in {"_int", "_str", "_path", "_float", "_bool"}
                and node.args and isinstance(node.args[0], ast.Constant)):
            names.add("EMNIST_EDGE_" + node.args[0].value)
    return names


def test_every_app_setting_for_the_app_is_one_it_reads():
    ours = {key for key in app_settings() if key.startswith("EMNIST_EDGE_")}
    assert ours, "no EMNIST_EDGE_ settings"
    assert ours <= config_setting_names(), ours - config_setting_names()
    settings = app_settings()
    assert settings["EMNIST_EDGE_BATCH_CONTAINER"] == "batches"
    assert settings["EMNIST_EDGE_RESULTS_CONTAINER"] == "results"


def test_torch_threads_follow_the_instance_size():
    app = module("functionApp")
    assert app_settings()["EMNIST_EDGE_TORCH_THREADS"] == Expr("string(torchThreads)")
    assert app.variables["torchThreads"].text.decode() == "instanceMemoryMB >= 4096 ? 2 : 1"


def test_event_grid_delivers_blob_created_under_batches_to_the_blob_trigger_webhook():
    topic = only(module("eventGrid").resources_of("Microsoft.EventGrid/systemTopics")).value()
    assert topic["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"

    wiring = MAIN.modules["blobTriggerSubscription"]
    assert wiring.conditional, "needs the deployed code: only when wireBlobTrigger is true"
    subscription_file = module("blobTriggerSubscription")
    subscription = only(
        subscription_file.resources_of("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    ).value()
    event_filter = subscription["properties"]["filter"]
    assert event_filter["subjectBeginsWith"] == "/blobServices/default/containers/batches/"
    assert event_filter["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    destination = subscription["properties"]["destination"]
    assert destination["endpointType"] == "WebHook"
    url = destination["properties"]["endpointUrl"]
    function = MAIN.lookup("blobTriggerFunctionName")
    assert url.startswith("https://${functionApp.properties.defaultHostName}/runtime/webhooks/"
                          f"blobs?functionName=Host.Functions.{function}&code=")
    assert url.endswith("${hostKeys.systemKeys.blobs_extension}")
    # The keys through listKeys() on the host's resource ID: an `existing` Microsoft.Web/sites/host
    # resource has no Bicep types and raises BCP081, a warning that fails ci.yml's Bicep job.
    assert subscription_file.variables["hostKeys"].text.decode() == (
        "listKeys('${functionApp.id}/host/default', functionApp.apiVersion)")
    assert subscription_file.resources_of("Microsoft.Web/sites/host") == []
    name = subscription["name"]
    assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", name), name


def test_event_grid_retries_then_dead_letters_with_the_topic_identity():
    subscription = only(module("blobTriggerSubscription").resources_of(
        "Microsoft.EventGrid/systemTopics/eventSubscriptions")).value()["properties"]
    assert subscription["retryPolicy"] == {"maxDeliveryAttempts": 30,
                                           "eventTimeToLiveInMinutes": 1440}
    dead_letter = subscription["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"] == {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": Expr("storage.id"), "blobContainerName": "deadletter"},
    }
    topic = only(module("eventGrid").resources_of("Microsoft.EventGrid/systemTopics")).value()
    assert topic["identity"] == {"type": "SystemAssigned"}


def test_scale_parameters_take_the_ranges_flex_consumption_documents():
    decorators = {name: MAIN.decorators(name) for name in
                  ("maximumInstanceCount", "alwaysReadyInstances", "instanceMemoryMB")}
    # "The lowest maximum scale is currently 40. The highest currently supported value is 1000."
    assert decorators["maximumInstanceCount"] >= {"minValue(40)", "maxValue(1000)"}
    assert MAIN.lookup("maximumInstanceCount") == 40
    # 512 MB is offered, but the worker alone peaks near 300 MB (infra/README.md).
    allowed = {" ".join(d.split()) for d in decorators["instanceMemoryMB"]
               if d.startswith("allowed")}
    assert allowed == {"allowed([ 2048 4096 ])"}
    assert MAIN.lookup("alwaysReadyInstances") == 0  # billed around the clock when above 0
    assert decorators["alwaysReadyInstances"] >= {"minValue(0)"}
    scale = only(module("functionApp").resources_of("Microsoft.Web/sites")).value()[
        "properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["alwaysReady"] == Expr(
        "alwaysReadyInstances > 0 ? [\n          {\n            name: 'http'\n"
        "            instanceCount: alwaysReadyInstances\n          }\n        ] : []")


def test_the_public_demo_is_a_parameter_that_reaches_the_app():
    assert MAIN.lookup("publicDemo") is True
    assert app_settings()["EMNIST_EDGE_PUBLIC_DEMO"] == Expr("publicDemo ? 'true' : 'false'")
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["publicDemo"]["value"] == "${PUBLIC_DEMO=true}"
    assert parameters["alwaysReadyInstances"]["value"] == "${AZURE_FUNCTION_ALWAYS_READY=0}"


def role_assignments() -> list[dict]:
    rbac = module("rbac")
    out = []
    for resource in rbac.resources_of("Microsoft.Authorization/roleAssignments"):
        value = resource.value()
        role = re.search(r"'([0-9a-f-]{36})'|\$\{(\w+)\}|, (\w+)\)$",
                         value["properties"]["roleDefinitionId"])
        assert role, value["properties"]["roleDefinitionId"]
        guid = role[1] or rbac.lookup(role[2] or role[3])
        out.append({"role": ROLES.get(guid, guid), "scope": value["scope"],
                    "principal": value["properties"]["principalId"],
                    "conditional": resource.conditional})
    return out


def test_the_app_identity_holds_the_least_roles_that_work():
    app_roles = {(a["role"], a["scope"]) for a in role_assignments()
                 if a["principal"] == Expr("identity.outputs.principalId")}
    assert app_roles == {
        ("Storage Blob Data Owner", Expr("storage")),
        ("Storage Queue Data Contributor", Expr("storage")),
        ("Monitoring Metrics Publisher", Expr("applicationInsights")),
    }


def test_the_system_topic_writes_the_dead_letter_container_only():
    topic = {(a["role"], a["scope"]) for a in role_assignments()
             if a["principal"] == Expr("eventGrid.outputs.principalId")}
    assert topic == {("Storage Blob Data Contributor", Expr("deadLetter"))}


def test_the_data_principal_reaches_the_batches_and_results_containers_only():
    data = [a for a in role_assignments() if a["principal"] not in (
        Expr("identity.outputs.principalId"), Expr("eventGrid.outputs.principalId"))]
    assert {(a["role"], a["scope"]) for a in data} == {
        ("Storage Blob Data Contributor", Expr("batches")),
        ("Storage Blob Data Contributor", Expr("results")),
    }
    assert all(a["conditional"] for a in data)
    rbac = module("rbac")
    containers = {r.symbol: r.value()["name"] for r in rbac.resources_of(CONTAINERS)}
    assert containers == {"batches": "batches", "results": "results", "deadLetter": "deadletter"}


GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_role_definition_ids_are_known_built_in_roles(path: Path):
    """A mistyped role ID deploys a failing role assignment (or another role): every GUID in the
    templates must be one of the built-in roles above, by their documented IDs."""
    bicep = BicepFile.load(path)
    for node in walk(bicep.tree.root_node):
        if node.type == "string" and GUID.fullmatch(value := str(bicep.evaluate(node))):
            assert value.lower() in ROLES, f"{path.name}: {value} is not a role this app uses"


# --- telemetry: the workbook and the SLO alerts ---------------------------------------------------

# The instruments of shared/telemetry.py, by name, and the attribute keys it records.
TELEMETRY_SOURCE = (REPO / "shared" / "telemetry.py").read_text()
INSTRUMENTS = set(re.findall(r'create_(?:counter|histogram)\(\s*"([\w.]+)"', TELEMETRY_SOURCE))


def kql_names(query: str) -> tuple[set[str], set[str]]:
    """The metric names and the customDimensions keys a query reads."""
    return (set(re.findall(r"'(emnist_edge\.[\w.]+)'", query)),
            set(re.findall(r"customDimensions\['([\w.]+)'\]", query)))


def test_the_queries_read_the_service_and_the_instruments_the_app_records():
    from shared.telemetry import SERVICE

    assert len(INSTRUMENTS) == 9, INSTRUMENTS
    workbook = module("workbook")
    queries = [item["kql"] for item in workbook.lookup("queries")]
    alerts = module("alerts")
    queries += [alerts.lookup("latencyQuery"), alerts.lookup("serverErrorQuery")]
    metric_names, dimensions = set(), set()
    for query in queries:
        roles = set(re.findall(r"cloud_RoleName == '([^']+)'", query))
        assert roles <= {SERVICE}, query
        assert roles or "customMetrics" in query, query
        names, keys = kql_names(query)
        metric_names |= names
        dimensions |= keys
    assert metric_names <= INSTRUMENTS, metric_names - INSTRUMENTS
    for key in dimensions:
        assert f'"{key}"' in TELEMETRY_SOURCE, key


def test_the_workbook_shows_latency_errors_batches_and_labels_on_application_insights():
    workbook = module("workbook")
    dashboard = only(workbook.resources_of("Microsoft.Insights/workbooks")).value()
    assert dashboard["kind"] == "shared"
    properties = dashboard["properties"]
    assert properties["sourceId"] == Expr("applicationInsights.id")
    assert properties["category"] == "workbook"
    assert properties["serializedData"] == Expr("string(workbook)")
    assert workbook.lookup("workbook")["version"] == properties["version"] == "Notebook/1.0"
    queries = {item["title"]: item["kql"] for item in workbook.lookup("queries")}
    latency = queries["Latency percentiles by route (ms)"]
    for percentile in (50, 95, 99):
        assert f"percentile(duration, {percentile})" in latency
    assert "by route = name" in latency
    assert kql_names(queries["Error answers by code"]) == (
        {"emnist_edge.http.errors", "emnist_edge.http.duration"}, {"error.type", "http.route"})
    assert kql_names(queries["Batch throughput (items/s by outcome)"]) == (
        {"emnist_edge.batch.items"}, {"outcome"})
    assert kql_names(queries["Label mix"]) == ({"emnist_edge.prediction.confidence"}, {"label"})
    assert kql_names(queries["Confidence of the predicted label"])[0] == {
        "emnist_edge.prediction.confidence"}


def alert_rules() -> dict[str, dict]:
    alerts = module("alerts")
    return {rule.symbol: rule.value()
            for rule in alerts.resources_of("Microsoft.Insights/scheduledQueryRules")}


def test_the_latency_alert_is_p95_over_15_ms_for_5_minutes():
    alerts = module("alerts")
    rule = alert_rules()["latencyAlert"]
    assert rule["kind"] == "LogAlert"
    properties = rule["properties"]
    assert properties["scopes"] == [Expr("applicationInsights.id")]
    assert properties["windowSize"] == properties["evaluationFrequency"] == "PT5M"
    [condition] = properties["criteria"]["allOf"]
    assert condition["operator"] == "GreaterThan"
    assert condition["threshold"] == 15
    assert condition["metricMeasureColumn"] == "p95_ms"
    assert "p95_ms = percentile(duration, 95)" in condition["query"]
    assert alerts.lookup("latencyQuery") == condition["query"]
    assert properties["actions"]["actionGroups"] == [Expr("actionGroup.id")]


def test_the_server_error_alert_is_the_5xx_rate_over_5_minutes():
    rule = alert_rules()["serverErrorAlert"]
    properties = rule["properties"]
    assert properties["scopes"] == [Expr("applicationInsights.id")]
    assert properties["windowSize"] == properties["evaluationFrequency"] == "PT5M"
    [condition] = properties["criteria"]["allOf"]
    assert (condition["operator"], condition["threshold"]) == ("GreaterThan", 1)
    assert condition["metricMeasureColumn"] == "server_error_percent"
    assert "countif(toint(resultCode) >= 500)" in condition["query"]
    assert properties["actions"]["actionGroups"] == [Expr("actionGroup.id")]


def test_the_action_group_mails_the_alert_email_parameter():
    assert MAIN.lookup("alertEmail") == ""
    assert MAIN.modules["alerts"].param_nodes()["alertEmail"].text.decode() == "alertEmail"
    group = only(module("alerts").resources_of("Microsoft.Insights/actionGroups")).value()
    assert group["location"] == "global"
    assert len(group["properties"]["groupShortName"]) <= 12
    receivers = " ".join(str(group["properties"]["emailReceivers"]).split())
    assert receivers == ("empty(alertEmail) ? [] : [ { name: 'slo-email' "
                         "emailAddress: alertEmail useCommonAlertSchema: true } ]")
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["alertEmail"]["value"] == "${ALERT_EMAIL}"
def test_the_shard_queues_exist_for_the_functions_that_read_them():
    """Infra creates the shard queue and its poison queue, the app is told the queue's name,
    and the queue triggers the package indexes read exactly those two (identity-based, the
    host's own storage connection, whose identity holds Storage Queue Data Contributor)."""
    queues = module("storage").bindings["queueNames"]
    shard_queue = app_settings()["EMNIST_EDGE_SHARD_QUEUE"]
    assert queues == [shard_queue, f"{shard_queue}-poison"] == ["batch-shards",
                                                                "batch-shards-poison"]
    indexed = json.loads((Path(__file__).parent / "indexed_functions.json").read_text())
    triggers = {name: bindings[0] for name, bindings in indexed["functions"].items()
                if bindings[0]["type"] == "queueTrigger"}
    assert {t["queueName"] for t in triggers.values()} == set(queues)
    assert {t["connection"] for t in triggers.values()} == {"AzureWebJobsStorage"}
    settings = app_settings()
    assert "AzureWebJobsStorage__queueServiceUri" in settings
    host = json.loads((REPO / "host.json").read_text())["extensions"]["queues"]
    # One shard at a time per instance: a shard is CPU-bound on one core; instances scale out.
    assert (host["batchSize"], host["newBatchThreshold"], host["maxDequeueCount"]) == (1, 0, 5)
