# A complete Lambda deployment of one environment (staging or production): table, function with a
# streaming Function URL inside the vLLM VPC, its secrets in Secrets Manager, the health prober,
# optionally a CloudFront front door on your own hostname, alarms, and one static route over a
# pool of two private vLLM hosts.

locals {
  name = "ai-gateway-${var.environment}"

  # Route objects, not JSON strings: a plan then shows a changed field as that field.
  routes = {
    "llama-prod" = {
      # The Lambda reaches private addresses through its VPC attachment; no `via` needed.
      endpoints = [
        { id = "gpu-a", url = "${var.vllm_scheme}://${var.vllm_hosts[0]}:8000", weight = 2 },
        { id = "gpu-b", url = "${var.vllm_scheme}://${var.vllm_hosts[1]}:8000", weight = 1 },
      ]
      # The internal team and one partner (partner tokens name the route in `routes`).
      auth = { required = true, groups = ["ml-team", "partner-acme"] }
      # Clients send a session id so a conversation stays on one vLLM instance (prefix cache).
      affinity                = { header = "x-session-id" }
      upstream_api_key_secret = "VLLM_API_KEY"
      # idle_ms stays under the front door's origin_read_timeout (60 s), so a stalled stream
      # ends with the gateway's error event rather than CloudFront cutting the connection.
      timeouts       = { connect_ms = 2000, response_ms = 300000, idle_ms = 55000 }
      max_body_bytes = 10485760
      # Each token may send 600 requests a minute here unless it carries its own limit.
      rate_limit_rpm = 600
    }
  }

  origin_read_timeout = 60
}

# ---- the front door's certificate (only with domain_name): ACM in us-east-1, DNS-validated ----

resource "aws_acm_certificate" "front_door" {
  count             = var.domain_name == null ? 0 : 1
  provider          = aws.us_east_1
  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "certificate_validation" {
  for_each = var.domain_name == null ? {} : {
    for o in aws_acm_certificate.front_door[0].domain_validation_options : o.domain_name => o
  }
  zone_id         = var.route53_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "front_door" {
  count                   = var.domain_name == null ? 0 : 1
  provider                = aws.us_east_1
  certificate_arn         = aws_acm_certificate.front_door[0].arn
  validation_record_fqdns = [for r in aws_route53_record.certificate_validation : r.fqdn]
}

module "lambda" {
  source = "../../modules/lambda"

  name          = local.name
  artifact_path = "${path.root}/../../../target/lambda/gateway-lambda/bootstrap.zip"
  architecture  = var.architecture
  issuer        = local.name
  audience      = local.name

  # Secrets: into Secrets Manager through write-only arguments, never the environment or state.
  signing_keys         = var.signing_keys
  upstream_api_keys    = { VLLM_API_KEY = var.vllm_api_key }
  upstream_ca_bundle   = var.upstream_ca_bundle
  upstream_client_cert = var.upstream_client_cert
  upstream_client_key  = var.upstream_client_key
  upstream_tls         = var.upstream_tls
  secrets_version      = var.secrets_version

  vpc_id           = var.vpc_id
  subnet_ids       = var.subnet_ids
  route_table_ids  = var.route_table_ids
  vllm_cidr_blocks = var.vllm_cidr_blocks
  vllm_port        = 8000

  front_door = var.domain_name == null ? null : {
    domain_names        = [var.domain_name]
    certificate_arn     = aws_acm_certificate_validation.front_door[0].certificate_arn
    route53_zone_id     = var.route53_zone_id
    web_acl_id          = var.web_acl_id
    origin_auth         = "secret_header"
    origin_read_timeout = local.origin_read_timeout
  }

  # Production: cap what one burst can take from the account; staging shares the pool.
  reserved_concurrency = var.environment == "production" ? 200 : null
  alarms               = { routes = keys(local.routes) }
  alarm_topic_arn      = var.alarm_topic_arn
}

module "routes" {
  source = "../../modules/routes/lambda"

  table_name = module.lambda.table_name
  routes     = local.routes
}

# A stream that pauses longer than CloudFront's origin_read_timeout is cut by CloudFront; the
# gateway's own idle timeout should fire first.
check "streams_fit_the_front_door" {
  assert {
    condition     = var.domain_name == null ? true : alltrue([for r in module.routes.routes : r.timeouts.idle_ms <= local.origin_read_timeout * 1000])
    error_message = "A route's timeouts.idle_ms exceeds the front door's origin_read_timeout: CloudFront would cut its streams first."
  }
}
