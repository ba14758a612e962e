// Opus on Azure: one resource group per environment with everything the Functions app needs.
//   az deployment sub create --location <region> --template-file infra/bicep/main.bicep \
//     --parameters @infra/bicep/parameters/<environment>.parameters.json --parameters postgresAdminPassword=...
// docs/deploy.md is the operator's guide; the sizes per environment are in parameters/.

targetScope = 'subscription'

@description('The environment: it names every resource.')
@allowed([
  'staging'
  'production'
])
param environmentName string

@description('Region of every resource but the Static Web App; it must offer the Flex Consumption plan.')
param location string = deployment().location

@description('First part of every resource name.')
@minLength(2)
@maxLength(8)
param namePrefix string = 'opus'

@description('Static Web Apps are offered in a few regions only.')
param staticSiteLocation string = 'westeurope'

@description('Where alerts go (the action group and the app\'s own alert e-mails).')
param alertEmail string

@description('Sender of the app\'s alert e-mails (a domain verified with Resend).')
param alertEmailFrom string

@description('Object id of a person or group given Key Vault Secrets Officer, to set secrets by hand (optional).')
param operatorPrincipalId string = ''

// --- sizes -------------------------------------------------------------------------------------------
@description('PostgreSQL compute, e.g. Standard_B1ms.')
param postgresSkuName string

@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@minValue(32)
param postgresStorageGB int = 32

@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('Client address ranges allowed to reach PostgreSQL besides Azure services: [{ name, start, end }].')
param postgresClientFirewallRules array = []

@description('Memory of each Function App instance.')
param functionInstanceMemoryMB int = 2048

@description('Most instances each function group scales out to; Flex Consumption accepts 40 to 1000. It bounds no connection count: docs/deploy.md "Sizes" does.')
@minValue(40)
param functionMaximumInstances int

@description('Always-ready instances for HTTP (0: the API scales to zero).')
param alwaysReadyHttpInstances int

@description('PostgreSQL connections per instance (PG_POOL_MAX); docs/deploy.md "Sizes" fits it to the server\'s connection limit.')
param pgPoolMax int = 4

@description('Days the telemetry tables keep data.')
param logRetentionDays int

@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteDays int = 90

// --- pipeline ----------------------------------------------------------------------------------------
@description('Hour (UTC) of the nightly run.')
@minValue(0)
@maxValue(22)
param runHourUtc int = 2

@description('Hour (UTC) by which the nightly run must have completed: the run deadline and the alert.')
@minValue(1)
@maxValue(23)
param runDeadlineHourUtc int = 6

// Must be positive: alerts.bicep refuses less than an hour (runDeadlineMinutes), so a deadline hour at or before
// the run hour fails validation instead of the app's start.
var runDeadlineMinutes = (runDeadlineHourUtc - runHourUtc) * 60

@description('Upper bound on partitions per run (MAX_WORKERS): a partition pages one request at a time, so this is a run\'s requests in flight.')
@minValue(1)
param maxWorkers int = 64

@description('Nivoda requests per second.')
param nivodaRateLimitPerS string = '25'

param consolidatorConcurrency int = 2

@description('Deliveries of a message before Service Bus dead-letters it; PAGE_ATTEMPTS stays below it so our own count gives up first.')
param queueMaxDeliveries int = 10

@description('Attempts at one page, counted in partition_progress.')
param pageAttempts int = 5

// --- Nivoda and the API ------------------------------------------------------------------------------
param nivodaEndpoint string

param nivodaUsername string

@description('true: the Nivoda staging environment.')
param nivodaStaging bool

@description('JSON {"client_id": "read|trade|admin"} (HMAC_SCOPES).')
param hmacScopes string = '{}'

@description('Origins allowed besides the dashboard, comma-separated (CORS_ORIGINS).')
param extraCorsOrigins string = ''

// --- secrets (from the workflow's environment secrets; empty: set in Key Vault by hand) --------------
@secure()
param postgresAdminPassword string

@description('PostgreSQL administrator login; the app connects as this user.')
param postgresAdminLogin string = 'opusadmin'

@secure()
param nivodaPassword string = ''

@secure()
param hmacSecrets string = ''

@secure()
param resendApiKey string = ''

var baseName = '${namePrefix}-${environmentName}'
var token = take(uniqueString(subscription().id, environmentName, namePrefix), 6)
var tags = {
  application: 'opus'
  environment: environmentName
}
var storageAccountName = take(toLower('st${namePrefix}${environmentName}${token}'), 24)
var keyVaultName = take('kv-${namePrefix}-${take(environmentName, 4)}-${token}', 24)
var deploymentContainerName = 'app-package'
var watermarkContainerName = 'watermarks'
var databaseName = 'opus'

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${baseName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: '${baseName}-monitoring'
  scope: group
  params: {
    location: location
    workspaceName: 'log-${baseName}'
    appInsightsName: 'appi-${baseName}'
    retentionDays: logRetentionDays
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: '${baseName}-storage'
  scope: group
  params: {
    location: location
    accountName: storageAccountName
    deploymentContainerName: deploymentContainerName
    watermarkContainerName: watermarkContainerName
    tags: tags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: '${baseName}-servicebus'
  scope: group
  params: {
    location: location
    namespaceName: 'sb-${baseName}-${token}'
    maxDeliveryCount: queueMaxDeliveries
    tags: tags
  }
}

module postgres 'modules/postgres.bicep' = {
  name: '${baseName}-postgres'
  scope: group
  params: {
    location: location
    serverName: 'pg-${baseName}-${token}'
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: postgresStorageGB
    backupRetentionDays: postgresBackupRetentionDays
    administratorLogin: postgresAdminLogin
    administratorPassword: postgresAdminPassword
    databaseName: databaseName
    clientFirewallRules: postgresClientFirewallRules
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: '${baseName}-keyvault'
  scope: group
  params: {
    location: location
    vaultName: keyVaultName
    softDeleteRetentionDays: keyVaultSoftDeleteDays
    databaseHost: postgres.outputs.fqdn
    databaseName: databaseName
    databaseUsername: postgresAdminLogin
    databasePassword: postgresAdminPassword
    nivodaPassword: nivodaPassword
    hmacSecrets: hmacSecrets
    resendApiKey: resendApiKey
    tags: tags
  }
}

module dashboard 'modules/staticwebapp.bicep' = {
  name: '${baseName}-dashboard'
  scope: group
  params: {
    location: staticSiteLocation
    siteName: 'swa-${baseName}'
    tags: tags
  }
}

// Every setting the code reads (opus/config.py, function_app.py), one source: tests/deploy checks the list.
var dashboardOrigin = 'https://${dashboard.outputs.defaultHostname}'
var appSettings = {
  // Functions host: identity-based connections, no keys.
  AzureWebJobsStorage__accountName: storage.outputs.name
  // The Blob watermark store reaches Blob Storage by identity through this endpoint (BlobWatermarkStore.from_settings).
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  OPUS_SCHEDULE: '0 0 ${runHourUtc} * * *'
  OPUS_HOUSEKEEPING_SCHEDULE: '0 */5 * * * *'
  OPUS_TASK_HUB: '${namePrefix}${environmentName}'
  WATERMARK_CONTAINER: watermarkContainerName
  // Database: the URL is read first; the parts are there for tools that want them.
  DATABASE_URL: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/database-url/)'
  DATABASE_HOST: postgres.outputs.fqdn
  DATABASE_PORT: '5432'
  DATABASE_NAME: databaseName
  DATABASE_USERNAME: postgresAdminLogin
  DATABASE_PASSWORD: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/database-password/)'
  PG_POOL_MAX: string(pgPoolMax)
  PG_IDLE_TIMEOUT_MS: '60000'
  PG_CONN_TIMEOUT_MS: '10000'
  STATE_DIR: '/tmp/opus'
  // Nivoda.
  NIVODA_ENDPOINT: nivodaEndpoint
  NIVODA_USERNAME: nivodaUsername
  NIVODA_PASSWORD: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/nivoda-password/)'
  NIVODA_STAGING: nivodaStaging ? 'true' : 'false'
  // The two feeds the replaced system ran (natural, lab-grown), shipped in the package beside function_app.py.
  FEEDS_FILE: 'config/feeds.toml'
  NIVODA_TIMEOUT_S: '60'
  NIVODA_READ_ATTEMPTS: '3'
  NIVODA_RATE_LIMIT_PER_S: nivodaRateLimitPerS
  // Pipeline.
  WORKER_PAGE_SIZE: '50'
  MAX_WORKERS: string(maxWorkers)
  MIN_RECORDS_PER_WORKER: '1000'
  // Threads of the local runtime only; on Azure the Service Bus trigger's concurrency (host.json maxConcurrentCalls
  // per instance, instances following the queue depth) plays this part. Kept equal to the requests in flight.
  WORKER_CONCURRENCY: string(maxWorkers)
  // Planning counts with as many requests in flight as a run pages with.
  DENSITY_SCAN_PARALLELISM: string(maxWorkers)
  INCREMENTAL_BUFFER_MINUTES: '15'
  RUN_DEADLINE_MINUTES: string(runDeadlineMinutes)
  PLANNING_TIMEOUT_S: '120'
  PURCHASE_PENDING_ALERT_S: '300'
  PARTITION_STALL_S: '900'
  PAGE_ATTEMPTS: string(pageAttempts)
  CLAIM_TTL_SECONDS: '300'
  CONSOLIDATOR_BATCH_SIZE: '2000'
  CONSOLIDATOR_CONCURRENCY: string(consolidatorConcurrency)
  // In-thread: an instance has few cores, and chains on several instances are the parallelism.
  CONSOLIDATOR_PROCESSES: '0'
  CONSOLIDATOR_SLICE_S: '120'
  MAX_DELETE_FRACTION: '0.5'
  DELETE_CONFIRM_LIMIT: '50000'
  MAX_DELETE_FLOOR: '100'
  QUEUE_VISIBILITY_TIMEOUT_S: '180'
  QUEUE_MAX_DELIVERIES: string(queueMaxDeliveries)
  // The local runtime's housekeeping thread; on Azure the housekeeping timer runs it.
  HOUSEKEEPING_INTERVAL_S: '30'
  SCHEDULE: '0 ${runHourUtc} * * *'
  FULL_RUN_EVERY_DAYS: '7'
  // API.
  HMAC_SECRETS: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/hmac-secrets/)'
  HMAC_SCOPES: hmacScopes
  RATE_LIMIT_PER_MINUTE: '600'
  AUTH_FAILURES_PER_MINUTE: '30'
  API_MAX_BODY_BYTES: '65536'
  API_REQUEST_TIMEOUT_S: '10'
  API_KEY_CACHE_S: '5'
  API_KEEP_ALIVE_S: '5'
  // `opus serve` only: on Azure the Functions host scales instances.
  API_PROCESSES: '1'
  CORS_ORIGINS: empty(extraCorsOrigins) ? dashboardOrigin : '${dashboardOrigin},${extraCorsOrigins}'
  // Alerts.
  RESEND_API_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/resend-api-key/)'
  RESEND_ENDPOINT: 'https://api.resend.com/emails'
  ALERT_EMAIL_TO: alertEmail
  ALERT_EMAIL_FROM: alertEmailFrom
}

module functionApp 'modules/functionapp.bicep' = {
  name: '${baseName}-functionapp'
  scope: group
  params: {
    location: location
    planName: 'plan-${baseName}'
    appName: 'func-${baseName}-${token}'
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstances
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    appSettings: appSettings
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: '${baseName}-roles'
  scope: group
  params: {
    appPrincipalId: functionApp.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module alerts 'modules/alerts.bicep' = {
  name: '${baseName}-alerts'
  scope: group
  params: {
    location: location
    namePrefix: baseName
    alertEmail: alertEmail
    serviceBusId: serviceBus.outputs.id
    appInsightsId: monitoring.outputs.appInsightsId
    runDeadlineHourUtc: runDeadlineHourUtc
    runDeadlineMinutes: runDeadlineMinutes
    tags: tags
  }
}

module workbook 'modules/workbook.bicep' = {
  name: '${baseName}-workbook'
  scope: group
  params: {
    location: location
    displayName: 'Opus runs (${environmentName})'
    appInsightsId: monitoring.outputs.appInsightsId
    serviceBusId: serviceBus.outputs.id
    rateLimitPerS: nivodaRateLimitPerS
    tags: tags
  }
}

var functionAppOrigin = 'https://${functionApp.outputs.defaultHostname}'

// Read by the workflow (publishing) and the guide (migrations, first run).
output resourceGroupName string = group.name
output functionAppName string = functionApp.outputs.name
// The API's origin: the dashboard's config.js takes this and adds /api/v2 itself (static_dashboard/js/api.js).
output functionAppUrl string = functionAppOrigin
output apiBaseUrl string = '${functionAppOrigin}/api/v2'
output staticWebAppName string = dashboard.outputs.name
output dashboardUrl string = dashboardOrigin
output keyVaultName string = keyVault.outputs.name
output postgresServerName string = postgres.outputs.name
output postgresHost string = postgres.outputs.fqdn
output databaseName string = databaseName
output postgresAdminLogin string = postgresAdminLogin
output serviceBusNamespace string = serviceBus.outputs.name
output storageAccountName string = storage.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
output workbookId string = workbook.outputs.id
output alertRuleNames array = alerts.outputs.alertRuleNames
