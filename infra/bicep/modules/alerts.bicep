// One action group (e-mail) and the three alert rules the operator's guide names.

@description('Azure region of the log alert rules.')
param location string

param namePrefix string

@description('Who is told.')
param alertEmail string

param serviceBusId string

param appInsightsId string

@description('Hour (UTC) by which the nightly run must have completed.')
@minValue(1)
@maxValue(23)
param runDeadlineHourUtc int

// RUN_DEADLINE_MINUTES as main.bicep derives it: a deadline hour at or before the run hour would make it zero or
// negative, which the app's Settings refuse only when it starts; this refuses it when the deployment is validated.
@description('Minutes from the nightly run to its deadline (RUN_DEADLINE_MINUTES).')
@minValue(60)
param runDeadlineMinutes int

param tags object = {}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-ops'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(replace(namePrefix, '-', ''), 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Any dead-lettered message means a page or a consolidation slice gave up: somebody has to look.
resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages in a dead-letter queue (work-items or consolidate).'
    severity: 1
    enabled: true
    scopes: [
      serviceBusId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// Failed invocations; client errors of the REST API (4xx) are the callers' business, not a failure. Compared as
// text: a trigger's empty or non-numeric resultCode would make toint() null and drop the failure.
resource functionFailures 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-function-failures'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix}: function failures'
    description: 'A function invocation failed (timer, Service Bus, orchestrator, or an API 5xx).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | where success == false | where not(tostring(resultCode) startswith "4") | summarize failures = count() by operation_Name'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Evaluated hourly over the day so far; it returns a row only in the hour after the deadline: one per feed whose run
// was scheduled (or skipped, or not planned) since midnight UTC with no "run completed" of that feed since, or one
// row when no run was scheduled at all. So it fires at most once a night, and for one feed of two.
var runLateQuery = 'let since = startofday(now()); let deadline = since + ${runDeadlineHourUtc}h; let expected = traces | where timestamp >= since | where message in ("run scheduled", "scheduled run skipped: a run is already active", "scheduled run could not be planned") | extend feed = tostring(customDimensions.feed) | where isnotempty(feed) | distinct feed; let completed = traces | where timestamp >= since | where message == "run completed" | extend feed = tostring(customDimensions.feed) | where isnotempty(feed) | distinct feed; let late = expected | join kind=leftanti completed on feed; let nothing = print feed = "(no run scheduled)" | where toscalar(expected | count) == 0; union late, nothing | where now() >= deadline and now() < deadline + 1h'

resource runLate 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-run-not-completed'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix}: nightly run not completed by ${runDeadlineHourUtc}:00 UTC'
    description: 'A feed\'s run scheduled since midnight UTC had not completed by the deadline hour (${runDeadlineMinutes} minutes after the nightly start).'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    // A day: the query looks back to midnight (a six-hour window missed the 02:00 lines for a deadline after 08:00).
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: runLateQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
output alertRuleNames array = [
  deadLetters.name
  functionFailures.name
  runLate.name
]
