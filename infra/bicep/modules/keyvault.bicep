// Key Vault (RBAC) holding every secret the app reads; app settings refer to them by URI.
// A secret whose parameter is empty is not written here: set it with `az keyvault secret set` (docs/deploy.md),
// and later deployments leave it alone.

@description('Azure region.')
param location string

@description('Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param vaultName string

@description('Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionDays int

@description('PostgreSQL host, to build the database URL.')
param databaseHost string

param databaseName string

param databaseUsername string

@secure()
param databasePassword string

@secure()
param nivodaPassword string = ''

@description('JSON object {"client_id": "secret"} (HMAC_SECRETS).')
@secure()
param hmacSecrets string = ''

@secure()
param resendApiKey string = ''

param tags object = {}

// The database URL carries the password, so it is a secret too; the password is escaped for the URL.
var databaseUrl = 'postgresql://${uriComponent(databaseUsername)}:${uriComponent(databasePassword)}@${databaseHost}:5432/${databaseName}?sslmode=require'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionDays
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource databasePasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'database-password'
  properties: {
    value: databasePassword
    contentType: 'text/plain'
  }
}

resource databaseUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'database-url'
  properties: {
    value: databaseUrl
    contentType: 'text/plain'
  }
}

resource nivodaPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(nivodaPassword)) {
  parent: vault
  name: 'nivoda-password'
  properties: {
    value: nivodaPassword
    contentType: 'text/plain'
  }
}

resource hmacSecretsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(hmacSecrets)) {
  parent: vault
  name: 'hmac-secrets'
  properties: {
    value: hmacSecrets
    contentType: 'application/json'
  }
}

resource resendApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(resendApiKey)) {
  parent: vault
  name: 'resend-api-key'
  properties: {
    value: resendApiKey
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
