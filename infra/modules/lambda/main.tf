# The gateway as an AWS Lambda behind a Function URL (response streaming), with its DynamoDB table,
# a least-privilege role, an optional VPC attachment to reach private vLLM hosts, and its logs; and
# the same package as the health prober, invoked on an EventBridge schedule.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  table_name = coalesce(var.table_name, var.name)
  in_vpc     = var.vpc_id != null

  # What the gateway reads from its environment at start (lambda/src): the table, the token
  # settings and where its secrets are. No secret value is ever in the environment: signing keys,
  # upstream API keys, the origin secret and the upstream TLS material are in Secrets Manager
  # (secrets.tf), read once per cold start through GATEWAY_SECRETS_ARN.
  environment = merge(
    var.extra_environment,
    {
      GATEWAY_TABLE                 = aws_dynamodb_table.this.name
      GATEWAY_SECRETS_ARN           = local.secret_arn
      GATEWAY_ISSUER                = var.issuer
      GATEWAY_AUDIENCE              = var.audience
      GATEWAY_MAX_TOKEN_TTL_SECONDS = tostring(var.max_ttl_seconds)
    },
    # Secrets are read once per cold start: a new secrets_version changes the function's
    # configuration, so Lambda replaces every warm instance and each reads the new values.
    var.secrets_version == null ? {} : { GATEWAY_SECRETS_VERSION = tostring(var.secrets_version) },
  )

  # The prober reads routes and writes health records and down sets: the table is all it needs
  # (no signing keys, no upstream keys; vLLM's /health needs no key). When the vLLM hosts want
  # TLS from a private CA or a client certificate, it gets its own secret holding only that.
  probe_environment = merge(
    {
      GATEWAY_TABLE = aws_dynamodb_table.this.name
      GATEWAY_MODE  = "probe"
    },
    local.probe_has_secret ? { GATEWAY_SECRETS_ARN = local.probe_secret_arn } : {},
    local.probe_has_secret && var.secrets_version != null ? { GATEWAY_SECRETS_VERSION = tostring(var.secrets_version) } : {},
  )
}

# ---- state: one table, entity/item keys, TTL on `ttl` -------------------------------------------

resource "aws_dynamodb_table" "this" {
  name         = local.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "entity"
  range_key    = "item"

  attribute {
    name = "entity"
    type = "S"
  }

  attribute {
    name = "item"
    type = "S"
  }

  # Leases, ephemeral routes and revocations carry `ttl` (unix seconds); DynamoDB removes them
  # after it passes (the gateway also ignores expired items, as deletion can lag).
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = true

  tags = var.tags
}

# ---- logs ---------------------------------------------------------------------------------------

# One JSON line per request, and one CloudWatch Embedded Metric Format line per request, which
# CloudWatch turns into metrics in the GATEWAY_EMF_NAMESPACE namespace (default AIGateway).
resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# The prober's: a summary line per round and a line per endpoint state change.
resource "aws_cloudwatch_log_group" "probe" {
  name              = "/aws/lambda/${var.name}-probe"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# ---- identity: only the table's actions the gateway uses, only on the table; logs to its group;
# its own secret. The prober has a role of its own, so that it never holds the gateway's secret.

locals {
  assume_lambda = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  # Both functions: the table (it has no indexes, so no "<arn>/index/..." resource is needed).
  # The prober calls Scan (routes), Query (leases, health records), GetItem (down sets), PutItem
  # and DeleteItem (health records, down sets, pruned token records); the gateway's metrics need
  # UpdateItem (atomic ADD) and Query.
  table_statement = {
    Sid    = "GatewayTable"
    Effect = "Allow"
    Action = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:TransactWriteItems",
    ]
    Resource = [aws_dynamodb_table.this.arn]
  }

  # Secrets Manager calls KMS on the caller's behalf when the secret is under a customer-managed
  # key; the caller then needs kms:Decrypt on that key, and only through Secrets Manager.
  kms_statement = var.kms_key_arn == null ? [] : [{
    Sid      = "SecretKey"
    Effect   = "Allow"
    Action   = ["kms:Decrypt"]
    Resource = [var.kms_key_arn]
    Condition = {
      StringEquals = { "kms:ViaService" = "secretsmanager.${data.aws_region.current.region}.amazonaws.com" }
    }
  }]
}

resource "aws_iam_role" "this" {
  name               = "${var.name}-lambda"
  assume_role_policy = local.assume_lambda
  tags               = var.tags
}

resource "aws_iam_role_policy" "this" {
  name = "${var.name}-gateway"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        local.table_statement,
        {
          Sid    = "OwnLogGroup"
          Effect = "Allow"
          Action = ["logs:CreateLogStream", "logs:PutLogEvents"]
          # Log streams are named by Lambda at run time, so the streams of the log group are
          # addressed as "<log group arn>:*", the narrowest ARN CloudWatch Logs allows here.
          Resource = ["${aws_cloudwatch_log_group.this.arn}:*"]
        },
        {
          # Read once per cold start: the signing keys, upstream API keys, origin secret and
          # upstream TLS material, as one JSON object. This secret only, never a wildcard.
          Sid      = "OwnSecret"
          Effect   = "Allow"
          Action   = ["secretsmanager:GetSecretValue"]
          Resource = [local.secret_arn]
        },
      ],
      local.kms_statement,
    )
  })
}

resource "aws_iam_role" "probe" {
  name               = "${var.name}-probe"
  assume_role_policy = local.assume_lambda
  tags               = var.tags
}

resource "aws_iam_role_policy" "probe" {
  name = "${var.name}-probe"
  role = aws_iam_role.probe.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        local.table_statement,
        {
          Sid      = "OwnLogGroup"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = ["${aws_cloudwatch_log_group.probe.arn}:*"]
        },
      ],
      # Only the upstream TLS material, and only when the vLLM hosts need it.
      local.probe_has_secret ? [{
        Sid      = "ProbeSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [local.probe_secret_arn]
      }] : [],
      local.probe_has_secret ? local.kms_statement : [],
    )
  })
}

# ENI management for the VPC attachment needs Resource "*" (AWS requires it); it comes from the AWS
# managed policy that holds only those EC2 actions, so the policies above stay wildcard-free.
resource "aws_iam_role_policy_attachment" "vpc_eni" {
  count      = local.in_vpc ? 1 : 0
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
}

resource "aws_iam_role_policy_attachment" "probe_vpc_eni" {
  count      = local.in_vpc ? 1 : 0
  role       = aws_iam_role.probe.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
}

# ---- network: egress only to the vLLM port, DynamoDB (gateway endpoint) and Secrets Manager -----

resource "aws_security_group" "this" {
  count       = local.in_vpc ? 1 : 0
  name        = "${var.name}-lambda"
  description = "AI gateway Lambda: egress to vLLM hosts, DynamoDB and Secrets Manager only"
  vpc_id      = var.vpc_id
  tags        = var.tags
  # No inline rules: Terraform removes the default allow-all egress, and the rules below add
  # exactly what the gateway needs. Function URL requests do not pass through this group.
}

resource "aws_vpc_security_group_egress_rule" "vllm" {
  for_each          = local.in_vpc ? toset(var.vllm_cidr_blocks) : toset([])
  security_group_id = aws_security_group.this[0].id
  description       = "vLLM"
  ip_protocol       = "tcp"
  from_port         = var.vllm_port
  to_port           = var.vllm_port
  cidr_ipv4         = each.value
}

data "aws_ec2_managed_prefix_list" "dynamodb" {
  count = local.in_vpc ? 1 : 0
  name  = "com.amazonaws.${data.aws_region.current.region}.dynamodb"
}

resource "aws_vpc_security_group_egress_rule" "dynamodb" {
  count             = local.in_vpc ? 1 : 0
  security_group_id = aws_security_group.this[0].id
  description       = "DynamoDB over its gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = data.aws_ec2_managed_prefix_list.dynamodb[0].id
}

resource "aws_vpc_endpoint" "dynamodb" {
  count             = local.in_vpc && var.create_dynamodb_endpoint ? 1 : 0
  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.route_table_ids
  tags              = var.tags

  lifecycle {
    precondition {
      condition     = length(var.route_table_ids) > 0
      error_message = "route_table_ids are required to create the DynamoDB gateway endpoint (or set create_dynamodb_endpoint = false)."
    }
  }
}

# Secrets Manager has no gateway endpoint: an interface endpoint (private DNS, so the SDK's default
# endpoint resolves to it) in the function's subnets, reachable only from the function's group.
# Set create_secretsmanager_endpoint = false when the VPC already has one (or a NAT route), and
# allow this security group to reach it on 443 yourself.
resource "aws_security_group" "secretsmanager" {
  count       = local.in_vpc && var.create_secretsmanager_endpoint ? 1 : 0
  name        = "${var.name}-secretsmanager"
  description = "Secrets Manager endpoint: HTTPS from the AI gateway functions only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "secretsmanager" {
  count                        = local.in_vpc && var.create_secretsmanager_endpoint ? 1 : 0
  security_group_id            = aws_security_group.secretsmanager[0].id
  description                  = "HTTPS from the AI gateway functions"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.this[0].id
}

resource "aws_vpc_security_group_egress_rule" "secretsmanager" {
  count                        = local.in_vpc && var.create_secretsmanager_endpoint ? 1 : 0
  security_group_id            = aws_security_group.this[0].id
  description                  = "Secrets Manager over its interface endpoint"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.secretsmanager[0].id
}

resource "aws_vpc_endpoint" "secretsmanager" {
  count               = local.in_vpc && var.create_secretsmanager_endpoint ? 1 : 0
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${data.aws_region.current.region}.secretsmanager"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.secretsmanager[0].id]
  private_dns_enabled = true
  tags                = var.tags
}

# ---- the function and its URL ------------------------------------------------------------------

resource "aws_lambda_function" "this" {
  function_name    = var.name
  role             = aws_iam_role.this.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  filename         = var.artifact_path
  source_code_hash = filebase64sha256(var.artifact_path)
  memory_size      = var.memory_size
  timeout          = var.timeout_seconds
  kms_key_arn      = var.env_kms_arn
  # null: unreserved (draws on the account's pool). A number both guarantees and caps it.
  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = local.environment
  }

  # JSON lines (the function writes JSON already); Lambda passes the level as AWS_LAMBDA_LOG_LEVEL.
  logging_config {
    log_format            = "JSON"
    application_log_level = var.log_level
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.this.name
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = [aws_security_group.this[0].id]
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.in_vpc ? length(var.subnet_ids) > 0 && length(var.vllm_cidr_blocks) > 0 : true
      error_message = "With vpc_id set, subnet_ids and vllm_cidr_blocks are required."
    }
  }

  depends_on = [
    aws_iam_role_policy.this,
    aws_iam_role_policy_attachment.vpc_eni,
    aws_cloudwatch_log_group.this,
    # The function reads the secret at its first cold start: let it exist first.
    aws_secretsmanager_secret_version.gateway,
    aws_vpc_endpoint.secretsmanager,
  ]
}

resource "aws_lambda_function_url" "this" {
  function_name = aws_lambda_function.this.function_name
  # The gateway authenticates every request itself (bearer tokens). AWS_IAM only behind the
  # front door with origin_auth = "oac", where CloudFront signs each request (front_door.tf).
  authorization_type = local.oac ? "AWS_IAM" : "NONE"
  # Server-sent events reach the client chunk by chunk.
  invoke_mode = "RESPONSE_STREAM"
}

# A NONE-auth URL still needs a resource policy that lets anyone call it through the URL. Behind
# a front door with origin_auth = "secret_header" the URL stays callable, but the gateway refuses
# (403) every request without the origin secret CloudFront adds (x-origin-verify).
resource "aws_lambda_permission" "url" {
  count                  = local.oac ? 0 : 1
  statement_id           = "AllowPublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "url_invoke" {
  count                    = local.oac ? 0 : 1
  statement_id             = "AllowInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this.function_name
  principal                = "*"
  invoked_via_function_url = true
}

# ---- health probes: the same package with GATEWAY_MODE=probe, on a schedule -----------------------

resource "aws_lambda_function" "probe" {
  function_name    = "${var.name}-probe"
  role             = aws_iam_role.probe.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  filename         = var.artifact_path
  source_code_hash = filebase64sha256(var.artifact_path)
  # A round probes every endpoint at once, each within 2 s, then writes its health; then
  # vLLM's load readings every 10 s for up to 50 s, until the next scheduled run.
  memory_size = 128
  timeout     = 60
  kms_key_arn = var.env_kms_arn

  environment {
    variables = local.probe_environment
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = var.log_level
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.probe.name
  }

  # It must reach the vLLM hosts as the gateway does.
  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = [aws_security_group.this[0].id]
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.upstream_tls && var.secrets_arn != null ? var.probe_secrets_arn != null : true
      error_message = "With secrets_arn and upstream_tls, give probe_secrets_arn: a secret holding only the GATEWAY_UPSTREAM_* keys, for the prober."
    }
  }

  depends_on = [
    aws_iam_role_policy.probe,
    aws_iam_role_policy_attachment.probe_vpc_eni,
    aws_cloudwatch_log_group.probe,
    aws_secretsmanager_secret_version.probe,
    aws_vpc_endpoint.secretsmanager,
  ]
}

resource "aws_cloudwatch_event_rule" "probe" {
  name                = "${var.name}-probe"
  description         = "One round of AI gateway health probes"
  schedule_expression = var.probe_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "probe" {
  rule      = aws_cloudwatch_event_rule.probe.name
  target_id = "probe"
  arn       = aws_lambda_function.probe.arn
}

# Only this rule may invoke the prober.
resource "aws_lambda_permission" "probe_schedule" {
  statement_id  = "AllowProbeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.probe.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.probe.arn
}
