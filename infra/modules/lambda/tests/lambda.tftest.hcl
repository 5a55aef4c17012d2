# The Lambda module planned with mock providers: no AWS account, no credentials. Computed values
# the assertions need (ARNs, the Function URL) are given at plan time by the mocks below.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { region = "eu-west-1" }
  }
  mock_data "aws_ec2_managed_prefix_list" {
    defaults = { id = "pl-dynamodb" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/ai-gateway" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/ai-gateway" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ai-gateway-AbCdEf" }
  }
  mock_resource "aws_lambda_function_url" {
    defaults = { function_url = "https://abc123.lambda-url.eu-west-1.on.aws/" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/ai-gateway-lambda" }
  }
  mock_resource "aws_security_group" {
    defaults = { id = "sg-0123" }
  }
}

mock_provider "random" {
  override_during = plan
}

# The prober's secret gets an ARN of its own, so the assertions can tell the two apart.
override_resource {
  target          = aws_secretsmanager_secret.probe
  override_during = plan
  values          = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ai-gateway-probe-GhIjKl" }
}

override_resource {
  target          = aws_iam_role.probe
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/ai-gateway-probe" }
}

variables {
  artifact_path     = "tests/fake-bootstrap.zip"
  signing_keys      = "[{\"kid\":\"k-test\",\"alg\":\"HS256\",\"secret\":\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"}]"
  upstream_api_keys = { VLLM_API_KEY = "not-a-real-key" }
}

run "secrets_are_in_secrets_manager_never_in_the_environment" {
  command = plan

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["GATEWAY_SECRETS_ARN"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ai-gateway-AbCdEf"
    error_message = "The gateway finds its secret through GATEWAY_SECRETS_ARN."
  }

  assert {
    condition     = length(setintersection(keys(aws_lambda_function.this.environment[0].variables), ["GATEWAY_SIGNING_KEYS", "VLLM_API_KEY", "GATEWAY_ORIGIN_SECRET", "GATEWAY_UPSTREAM_CLIENT_KEY"])) == 0
    error_message = "No secret is an environment variable of the gateway."
  }

  assert {
    condition     = alltrue([for v in values(aws_lambda_function.this.environment[0].variables) : !strcontains(v, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY") && !strcontains(v, "not-a-real-key")])
    error_message = "No environment value carries the signing key or the upstream key."
  }

  assert {
    condition     = toset(keys(aws_lambda_function.probe.environment[0].variables)) == toset(["GATEWAY_MODE", "GATEWAY_TABLE"])
    error_message = "The prober's environment is its mode and the table, nothing else."
  }

  # Write-only: the value is sent to AWS on apply but is null in the plan (and the state).
  assert {
    condition     = aws_secretsmanager_secret_version.gateway[0].secret_string_wo == null && aws_secretsmanager_secret_version.gateway[0].secret_string_wo_version == 1
    error_message = "The secret value is written with the write-only secret_string_wo, versioned by secrets_version."
  }

  assert {
    condition     = length(aws_secretsmanager_secret.probe) == 0 && length(aws_secretsmanager_secret_version.probe) == 0
    error_message = "Without upstream_tls the prober has no secret."
  }
}

run "get_secret_value_is_allowed_on_the_gateways_secret_only" {
  command = plan

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s if anytrue([for a in s.Action : startswith(a, "secretsmanager:")])] == [{
      Sid      = "OwnSecret"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:ai-gateway-AbCdEf"]
    }]
    error_message = "One statement grants secretsmanager:GetSecretValue, on the gateway's secret only."
  }

  assert {
    condition     = alltrue(flatten([for p in [aws_iam_role_policy.this.policy, aws_iam_role_policy.probe.policy] : [for s in jsondecode(p).Statement : [for x in concat(s.Action, s.Resource) : !strcontains(x, "*") || endswith(x, ":log-group:/aws/lambda/ai-gateway:*")]]]))
    error_message = "No wildcard action or resource, except the streams of the functions' own log groups."
  }

  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Action if s.Sid == "GatewayTable"])) == toset(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:TransactWriteItems"])
    error_message = "Exactly the seven table actions the gateway uses."
  }

  assert {
    condition     = !strcontains(aws_iam_role_policy.probe.policy, "secretsmanager:")
    error_message = "The prober's role may not read any secret without upstream_tls."
  }

  assert {
    condition     = aws_lambda_function.probe.role != aws_lambda_function.this.role
    error_message = "The prober runs under a role of its own, which never holds the gateway's secret."
  }
}

run "the_prober_gets_only_the_upstream_tls_secret" {
  command = plan

  variables {
    upstream_tls       = true
    upstream_ca_bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  }

  assert {
    condition     = aws_lambda_function.probe.environment[0].variables["GATEWAY_SECRETS_ARN"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ai-gateway-probe-GhIjKl"
    error_message = "The prober reads its own secret."
  }

  assert {
    condition     = strcontains(aws_iam_role_policy.probe.policy, "secret:ai-gateway-probe-GhIjKl") && !strcontains(aws_iam_role_policy.probe.policy, "secret:ai-gateway-AbCdEf")
    error_message = "The prober's role reads the prober's secret, never the gateway's."
  }
}

run "an_existing_secret_is_used_as_is" {
  command = plan

  variables {
    secrets_arn  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:made-elsewhere-XyZ123"
    signing_keys = null
  }

  assert {
    condition     = length(aws_secretsmanager_secret.gateway) == 0 && length(aws_secretsmanager_secret_version.gateway) == 0
    error_message = "With secrets_arn the module creates no secret and writes no value."
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["GATEWAY_SECRETS_ARN"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:made-elsewhere-XyZ123"
    error_message = "The gateway reads the given secret."
  }

  assert {
    condition     = strcontains(aws_iam_role_policy.this.policy, "\"Resource\":[\"arn:aws:secretsmanager:eu-west-1:123456789012:secret:made-elsewhere-XyZ123\"]")
    error_message = "GetSecretValue on the given secret only."
  }
}

run "without_a_front_door_the_function_url_is_the_gateway" {
  command = plan

  assert {
    condition     = aws_lambda_function_url.this.invoke_mode == "RESPONSE_STREAM" && aws_lambda_function_url.this.authorization_type == "NONE"
    error_message = "A streaming Function URL; the gateway checks bearer tokens itself."
  }

  assert {
    condition     = length(aws_cloudfront_distribution.this) == 0 && length(aws_route53_record.front_door) == 0 && length(random_password.origin) == 0
    error_message = "No front door unless asked for."
  }

  assert {
    condition     = aws_lambda_permission.url[0].function_url_auth_type == "NONE" && aws_lambda_permission.url_invoke[0].action == "lambda:InvokeFunction" && aws_lambda_permission.url_invoke[0].invoked_via_function_url == true
    error_message = "InvokeFunctionUrl for the URL, and InvokeFunction only via the URL."
  }

  assert {
    condition     = output.gateway_url == "https://abc123.lambda-url.eu-west-1.on.aws/"
    error_message = "The gateway's URL is the Function URL."
  }
}

run "a_front_door_with_the_origin_secret" {
  command = plan

  variables {
    front_door = {
      domain_names    = ["gateway.example.com"]
      certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/0000-1111"
      route53_zone_id = "Z0123456789"
    }
    origin_secret = "0123456789abcdefghijklmnopqrstuvwxyzABCD"
  }

  assert {
    condition     = [for o in aws_cloudfront_distribution.this[0].origin : o.domain_name] == ["abc123.lambda-url.eu-west-1.on.aws"]
    error_message = "CloudFront's origin is the Function URL's host."
  }

  assert {
    condition     = [for o in aws_cloudfront_distribution.this[0].origin : [for h in o.custom_header : h.name]] == [["x-origin-verify"]]
    error_message = "Every request to the origin carries x-origin-verify."
  }

  assert {
    condition     = aws_cloudfront_distribution.this[0].default_cache_behavior[0].viewer_protocol_policy == "https-only" && aws_cloudfront_distribution.this[0].default_cache_behavior[0].compress == false
    error_message = "HTTPS only; answers stream through uncompressed."
  }

  assert {
    condition     = [for f in aws_cloudfront_distribution.this[0].default_cache_behavior[0].function_association : f.event_type] == ["viewer-request"]
    error_message = "The viewer-request function sets x-forwarded-host."
  }

  assert {
    condition     = aws_lambda_function_url.this.authorization_type == "NONE" && length(aws_lambda_permission.url) == 1 && length(aws_lambda_permission.cloudfront_url) == 0
    error_message = "With secret_header the URL stays NONE; the origin secret is the lock."
  }

  assert {
    condition     = toset(keys(aws_route53_record.front_door)) == toset(["gateway.example.com A", "gateway.example.com AAAA"])
    error_message = "A and AAAA aliases for each domain name."
  }

  assert {
    condition     = length(random_password.origin) == 0
    error_message = "A given origin secret is used; none is generated."
  }
}

run "a_front_door_with_origin_access_control" {
  command = plan

  variables {
    front_door = {
      domain_names    = ["gateway.example.com"]
      certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/0000-1111"
      origin_auth     = "oac"
    }
  }

  assert {
    condition     = aws_lambda_function_url.this.authorization_type == "AWS_IAM" && aws_cloudfront_origin_access_control.this[0].origin_access_control_origin_type == "lambda"
    error_message = "With oac the URL takes AWS_IAM and CloudFront signs for a lambda origin."
  }

  assert {
    condition     = length(aws_lambda_permission.url) == 0 && length(aws_lambda_permission.url_invoke) == 0
    error_message = "No public permission on the URL with oac."
  }

  assert {
    condition     = aws_lambda_permission.cloudfront_url[0].principal == "cloudfront.amazonaws.com" && aws_lambda_permission.cloudfront_invoke[0].invoked_via_function_url == true
    error_message = "Only CloudFront may invoke, through the URL."
  }

  assert {
    condition     = length(random_password.origin) == 1 && length(aws_route53_record.front_door) == 0
    error_message = "The origin secret is generated when not given; no aliases without a zone."
  }
}

run "reserved_concurrency_is_reserved" {
  command = plan

  variables {
    reserved_concurrency = 20
  }

  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 20
    error_message = "reserved_concurrency reaches the function."
  }

  assert {
    condition     = coalesce(aws_lambda_function.probe.reserved_concurrent_executions, -1) == -1
    error_message = "The prober is not reserved."
  }
}

run "reserved_concurrency_refuses_a_negative_number" {
  command = plan

  variables {
    reserved_concurrency = -1
  }

  expect_failures = [var.reserved_concurrency]
}

run "alarms_by_default_and_per_watched_route" {
  command = plan

  variables {
    alarms          = { routes = ["llama-prod"] }
    alarm_topic_arn = "arn:aws:sns:eu-west-1:123456789012:ops"
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.gateway_5xx) == 1 && length(aws_cloudwatch_metric_alarm.lambda_throttles) == 1
    error_message = "The all-routes 5xx alarm and Lambda's throttles alarm are on by default."
  }

  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.route_5xx_ratio)) == toset(["llama-prod"]) && toset(keys(aws_cloudwatch_metric_alarm.route_overhead_p99)) == toset(["llama-prod"])
    error_message = "Each watched route gets a 5xx-ratio and an overhead-p99 alarm."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.route_overhead_p99["llama-prod"].namespace == "AIGateway" && aws_cloudwatch_metric_alarm.route_overhead_p99["llama-prod"].extended_statistic == "p99"
    error_message = "The overhead alarm reads the EMF namespace's GatewayOverhead p99."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.gateway_5xx[0].alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:ops"]) && aws_cloudwatch_metric_alarm.gateway_5xx[0].ok_actions == toset(["arn:aws:sns:eu-west-1:123456789012:ops"])
    error_message = "Alarms notify the topic when they fire and when they clear."
  }
}

run "no_emf_alarms_without_emf_and_none_when_disabled" {
  command = plan

  variables {
    extra_environment = { GATEWAY_EMF_NAMESPACE = "" }
    alarms            = { routes = ["llama-prod"] }
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.gateway_5xx) == 0 && length(aws_cloudwatch_metric_alarm.route_5xx_ratio) == 0 && length(aws_cloudwatch_metric_alarm.lambda_throttles) == 1
    error_message = "Without EMF lines only Lambda's own metrics are watched."
  }
}

run "alarms_can_be_switched_off" {
  command = plan

  variables {
    alarms = { enabled = false }
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.gateway_5xx) == 0 && length(aws_cloudwatch_metric_alarm.lambda_throttles) == 0
    error_message = "alarms.enabled = false creates no alarm."
  }
}

run "in_a_vpc_egress_is_only_vllm_dynamodb_and_secrets_manager" {
  command = plan

  variables {
    vpc_id           = "vpc-0123"
    subnet_ids       = ["subnet-a", "subnet-b"]
    route_table_ids  = ["rtb-a"]
    vllm_cidr_blocks = ["10.0.1.0/24"]
  }

  assert {
    condition     = toset(keys(aws_vpc_security_group_egress_rule.vllm)) == toset(["10.0.1.0/24"]) && aws_vpc_security_group_egress_rule.vllm["10.0.1.0/24"].from_port == 8000
    error_message = "Egress to the vLLM hosts on their port."
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.dynamodb[0].prefix_list_id == "pl-dynamodb" && aws_vpc_security_group_egress_rule.secretsmanager[0].from_port == 443
    error_message = "Egress to DynamoDB's prefix list and to the Secrets Manager endpoint on 443."
  }

  assert {
    condition     = aws_vpc_endpoint.secretsmanager[0].private_dns_enabled == true && aws_vpc_endpoint.secretsmanager[0].vpc_endpoint_type == "Interface"
    error_message = "A private-DNS Secrets Manager endpoint, so the SDK's default endpoint reaches it."
  }

  assert {
    condition     = length(aws_iam_role_policy_attachment.vpc_eni) == 1 && endswith(aws_iam_role_policy_attachment.vpc_eni[0].policy_arn, ":iam::aws:policy/service-role/AWSLambdaENIManagementAccess")
    error_message = "ENI management from AWS's ENI-only managed policy."
  }
}

run "refuses_secrets_in_extra_environment" {
  command = plan

  variables {
    extra_environment = { GATEWAY_SIGNING_KEYS = "[]" }
  }

  expect_failures = [var.extra_environment]
}

run "refuses_a_gateway_name_for_an_upstream_key" {
  command = plan

  variables {
    upstream_api_keys = { GATEWAY_SIGNING_KEYS = "x" }
  }

  expect_failures = [var.upstream_api_keys]
}

run "refuses_a_certificate_outside_us_east_1" {
  command = plan

  variables {
    front_door = {
      domain_names    = ["gateway.example.com"]
      certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0000-1111"
    }
  }

  expect_failures = [var.front_door]
}

run "refuses_egress_to_everywhere" {
  command = plan

  variables {
    vllm_cidr_blocks = ["0.0.0.0/0"]
  }

  expect_failures = [var.vllm_cidr_blocks]
}
