# CloudWatch alarms on what the function reports (lambda/src/emf.rs): one Embedded Metric Format
# line per request, namespace GATEWAY_EMF_NAMESPACE (default AIGateway), metrics Requests (Count),
# Latency, GatewayOverhead and UpstreamFirstByte (Milliseconds), PromptTokens, CompletionTokens,
# in two dimension sets: [route] and [route, status_class] (status_class "2xx", "4xx", "5xx", …).
# And on Lambda's own metrics (AWS/Lambda: Errors, Throttles). Actions go to alarm_topic_arn.

locals {
  emf_namespace = trimspace(lookup(var.extra_environment, "GATEWAY_EMF_NAMESPACE", "AIGateway"))
  alarms_on     = var.alarms.enabled
  emf_alarms    = local.alarms_on && local.emf_namespace != ""
  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
  alarm_routes  = local.emf_alarms ? toset(var.alarms.routes) : toset([])
}

# 5xx answers of the gateway across every route: a Metrics Insights query, so routes added later
# (by Terraform or the admin API) are covered without a change here.
resource "aws_cloudwatch_metric_alarm" "gateway_5xx" {
  count               = local.emf_alarms ? 1 : 0
  alarm_name          = "${var.name}-5xx"
  alarm_description   = "The gateway answered ${var.alarms.gateway_5xx} or more 5xx in ${var.alarms.period_seconds} s, all routes (502/503/504: upstreams failing, no live endpoint, timeouts; 500: configuration)."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.gateway_5xx
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "errors"
    label       = "5xx answers, all routes"
    expression  = "SELECT SUM(Requests) FROM SCHEMA(\"${local.emf_namespace}\", route, status_class) WHERE status_class = '5xx'"
    period      = var.alarms.period_seconds
    return_data = true
  }

  tags = var.tags
}

# Per watched route: the share of 5xx among its answers.
resource "aws_cloudwatch_metric_alarm" "route_5xx_ratio" {
  for_each            = local.alarm_routes
  alarm_name          = "${var.name}-${each.key}-5xx-ratio"
  alarm_description   = "More than ${var.alarms.route_5xx_ratio * 100}% of route ${each.key}'s answers were 5xx over ${var.alarms.period_seconds} s."
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.route_5xx_ratio
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id = "errors"
    metric {
      namespace   = local.emf_namespace
      metric_name = "Requests"
      dimensions  = { route = each.key, status_class = "5xx" }
      period      = var.alarms.period_seconds
      stat        = "Sum"
    }
  }

  metric_query {
    id = "all"
    metric {
      namespace   = local.emf_namespace
      metric_name = "Requests"
      dimensions  = { route = each.key }
      period      = var.alarms.period_seconds
      stat        = "Sum"
    }
  }

  metric_query {
    id          = "ratio"
    label       = "5xx share of ${each.key}"
    expression  = "FILL(errors, 0) / all"
    return_data = true
  }

  tags = var.tags
}

# Per watched route: the p99 of the time the gateway itself spends before the upstream request
# goes out (token check, route and lease lookups, balancing), not the model's generation time.
resource "aws_cloudwatch_metric_alarm" "route_overhead_p99" {
  for_each            = local.alarm_routes
  alarm_name          = "${var.name}-${each.key}-overhead-p99"
  alarm_description   = "The gateway's own overhead on route ${each.key} (GatewayOverhead p99) exceeded ${var.alarms.overhead_p99_ms} ms over ${var.alarms.period_seconds} s."
  namespace           = local.emf_namespace
  metric_name         = "GatewayOverhead"
  dimensions          = { route = each.key }
  extended_statistic  = "p99"
  period              = var.alarms.period_seconds
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.overhead_p99_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# Invocations that failed (a crash, a bad setting at start, the runtime giving up).
resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = local.alarms_on ? {
    gateway = aws_lambda_function.this.function_name
    probe   = aws_lambda_function.probe.function_name
  } : {}
  alarm_name          = "${each.value}-errors"
  alarm_description   = "Lambda counted ${var.alarms.lambda_errors} or more failed invocations of ${each.value} in ${var.alarms.period_seconds} s."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = var.alarms.period_seconds
  comparison_operator = "GreaterThanOrEqualToThreshold"
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.lambda_errors
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# Requests refused for want of concurrency (reserved_concurrency reached, or the account's pool).
resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  count               = local.alarms_on ? 1 : 0
  alarm_name          = "${var.name}-throttles"
  alarm_description   = "Lambda throttled ${var.alarms.lambda_throttles} or more invocations of ${var.name} in ${var.alarms.period_seconds} s (clients got 429 from the Function URL)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.this.function_name }
  statistic           = "Sum"
  period              = var.alarms.period_seconds
  comparison_operator = "GreaterThanOrEqualToThreshold"
  evaluation_periods  = var.alarms.evaluation_periods
  threshold           = var.alarms.lambda_throttles
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}
