variable "name" {
  description = "Name of the Lambda function, its IAM role and log group; also the table name unless table_name is set."
  type        = string
  default     = "ai-gateway"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,56}$", var.name))
    error_message = "name must be 1-56 letters, digits, `-` or `_` (it prefixes the role and security group names)."
  }
}

variable "table_name" {
  description = "Name of the DynamoDB table (GATEWAY_TABLE). Defaults to `name`."
  type        = string
  default     = null
}

variable "artifact_path" {
  description = "Path to the zip built by `cargo lambda build --release --output-format zip` (target/lambda/gateway-lambda/bootstrap.zip); its handler is `bootstrap`."
  type        = string
}

variable "architecture" {
  description = "Instruction set the artifact was built for: arm64 (`cargo lambda build --release --arm64`) or x86_64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB (CPU scales with it)."
  type        = number
  default     = 512

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be 128..10240 MB."
  }
}

variable "timeout_seconds" {
  description = "Longest a request may take, streaming included (Function URL streams end with the invocation; at most 900 s). Keep it at least the largest route's timeouts.response_ms."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 900
    error_message = "timeout_seconds must be 1..900."
  }
}

variable "signing_keys" {
  description = "GATEWAY_SIGNING_KEYS: the JSON array of signing keys (`gatewayctl key generate`). Ephemeral and sensitive: written into the gateway's secret with a write-only argument (never in the plan, the state or the function's environment). Required when this module writes the secret (secrets_arn = null and secrets_version set); pass it as TF_VAR_signing_keys on every plan and apply."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.signing_keys == null ? true : can(regex("^\\s*\\[", var.signing_keys))
    error_message = "signing_keys must be the JSON array printed by `gatewayctl key generate`."
  }
}

variable "issuer" {
  description = "GATEWAY_ISSUER: the `iss` written into and required of tokens."
  type        = string
  default     = "ai-gateway"
}

variable "audience" {
  description = "GATEWAY_AUDIENCE: the `aud` written into and required of tokens."
  type        = string
  default     = "ai-gateway"
}

variable "max_ttl_seconds" {
  description = "GATEWAY_MAX_TOKEN_TTL_SECONDS: the longest lifetime a minted token may have (default 90 days, at most 366 days)."
  type        = number
  default     = 7776000

  validation {
    condition     = var.max_ttl_seconds >= 60 && var.max_ttl_seconds <= 31622400
    error_message = "max_ttl_seconds must be 60..31622400 (366 days)."
  }
}

variable "upstream_api_keys" {
  description = "Upstream API key values by secret name, e.g. { VLLM_API_KEY = \"…\" }: each becomes a key of the gateway's secret that routes name in upstream_api_key_secret. Ephemeral and sensitive (written with a write-only argument); never put these in routes."
  type        = map(string)
  default     = {}
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = alltrue([for k in keys(var.upstream_api_keys) : can(regex("^[A-Z0-9_]{1,128}$", k)) && !startswith(k, "GATEWAY_") && !startswith(k, "AWS_") && !startswith(k, "LAMBDA_") && !startswith(k, "CLOUDFLARE_") && !startswith(k, "_")])
    error_message = "upstream_api_keys names must match ^[A-Z0-9_]{1,128}$ and may not be GATEWAY_*, AWS_*, LAMBDA_*, CLOUDFLARE_* or _* (the gateway's and the platform's own)."
  }
}

variable "upstream_ca_bundle" {
  description = "PEM bundle of the CAs that sign the vLLM hosts' certificates (a private CA), for https:// endpoints: GATEWAY_UPSTREAM_CA_BUNDLE in the secrets. Ephemeral and sensitive. Set upstream_tls = true so the prober gets it too."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.upstream_ca_bundle == null ? true : can(regex("-----BEGIN CERTIFICATE-----", var.upstream_ca_bundle))
    error_message = "upstream_ca_bundle must be PEM certificates (-----BEGIN CERTIFICATE-----)."
  }
}

variable "upstream_client_cert" {
  description = "PEM client certificate (chain) the gateway presents to vLLM hosts that require mutual TLS: GATEWAY_UPSTREAM_CLIENT_CERT in the secrets. Ephemeral and sensitive; give upstream_client_key with it."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = var.upstream_client_cert == null ? true : can(regex("-----BEGIN CERTIFICATE-----", var.upstream_client_cert))
    error_message = "upstream_client_cert must be a PEM certificate (-----BEGIN CERTIFICATE-----)."
  }
}

variable "upstream_client_key" {
  description = "PEM private key of upstream_client_cert: GATEWAY_UPSTREAM_CLIENT_KEY in the secrets. Ephemeral and sensitive."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = (var.upstream_client_key == null) == (var.upstream_client_cert == null)
    error_message = "upstream_client_cert and upstream_client_key go together."
  }

  validation {
    condition     = var.upstream_client_key == null ? true : can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.upstream_client_key))
    error_message = "upstream_client_key must be a PEM private key."
  }
}

variable "upstream_tls" {
  description = "Whether the vLLM hosts need the upstream TLS material (upstream_ca_bundle, or the client certificate): the prober, which probes them too, then gets a secret of its own holding only the GATEWAY_UPSTREAM_* keys (never the signing or API keys). Not a secret itself, so that it can decide what to create."
  type        = bool
  default     = false
}

variable "secrets_arn" {
  description = "ARN of an existing Secrets Manager secret holding the gateway's JSON object (see secrets.tf): the values then never pass through Terraform, and this module creates no secret. Null: this module creates it."
  type        = string
  default     = null

  validation {
    condition     = var.secrets_arn == null ? true : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.secrets_arn))
    error_message = "secrets_arn must be a Secrets Manager secret ARN."
  }
}

variable "probe_secrets_arn" {
  description = "ARN of an existing secret holding only the GATEWAY_UPSTREAM_* keys, for the prober (with secrets_arn and upstream_tls). Null: none, or the one this module creates."
  type        = string
  default     = null

  validation {
    condition     = var.probe_secrets_arn == null ? true : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.probe_secrets_arn))
    error_message = "probe_secrets_arn must be a Secrets Manager secret ARN."
  }
}

variable "secrets_version" {
  description = "Version of the secret values this module writes (secret_string_wo_version). Bump it whenever a value changes: write-only values leave no trace to compare, so nothing is written otherwise (a new origin secret is written at once). Null: the module creates the secrets but writes no value (put them with `aws secretsmanager put-secret-value`)."
  type        = number
  default     = 1

  validation {
    condition     = var.secrets_version == null ? true : var.secrets_version >= 1 && floor(var.secrets_version) == var.secrets_version
    error_message = "secrets_version must be a whole number from 1 (or null)."
  }
}

variable "kms_key_arn" {
  description = "ARN of a customer-managed KMS key for the secrets this module creates (null: the AWS-managed aws/secretsmanager key). The functions then get kms:Decrypt on it, only via Secrets Manager; give it also when secrets_arn names a secret under such a key."
  type        = string
  default     = null
}

variable "create_secretsmanager_endpoint" {
  description = "In a VPC: create a Secrets Manager interface endpoint (private DNS) in subnet_ids, reachable only from the functions' security group; the function has no other way to the secret (no NAT is assumed). Set false if the VPC already has one, and allow security_group_id to reach it on 443. About $7.30 a month per subnet's AZ."
  type        = bool
  default     = true
}

variable "origin_secret" {
  description = "The front door's origin secret (x-origin-verify, GATEWAY_ORIGIN_SECRET), at least 32 characters. Null: generated (random_password). Sensitive; it is part of CloudFront's origin configuration, so it is in the state either way."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.origin_secret == null ? true : length(var.origin_secret) >= 32 && can(regex("^[A-Za-z0-9._~+/=-]+$", var.origin_secret))
    error_message = "origin_secret must be at least 32 characters of [A-Za-z0-9._~+/=-] (it travels as a header value)."
  }
}

variable "front_door" {
  description = "A CloudFront distribution in front of the Function URL on your own hostnames (front_door.tf); null: none, the Function URL is the gateway's address. certificate_arn: ACM, us-east-1, covering every domain name. route53_zone_id: create A/AAAA aliases there. web_acl_id: a WAFv2 web ACL ARN (scope CLOUDFRONT). origin_auth: \"secret_header\" (URL auth NONE, the gateway refuses requests without the origin secret) or \"oac\" (URL auth AWS_IAM and CloudFront signs; clients must send x-amz-content-sha256 on POST/PUT, which OpenAI SDKs do not). origin_read_timeout: seconds of silence tolerated between two bytes of an answer (60 by default; above 60 needs a CloudFront quota increase, up to 180); keep it >= every route's timeouts.idle_ms / 1000 or streams that pause longer are cut."
  type = object({
    domain_names             = list(string)
    certificate_arn          = string
    route53_zone_id          = optional(string)
    web_acl_id               = optional(string)
    origin_auth              = optional(string, "secret_header")
    origin_read_timeout      = optional(number, 60)
    origin_keepalive_timeout = optional(number, 5)
    viewer_protocol_policy   = optional(string, "https-only")
    price_class              = optional(string, "PriceClass_All")
  })
  default = null

  validation {
    condition     = var.front_door == null ? true : length(var.front_door.domain_names) > 0 && alltrue([for d in var.front_door.domain_names : can(regex("^[a-z0-9-]+(\\.[a-z0-9-]+)+$", d))])
    error_message = "front_door.domain_names must be one or more lowercase hostnames."
  }

  validation {
    condition     = var.front_door == null ? true : can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/.+$", var.front_door.certificate_arn))
    error_message = "front_door.certificate_arn must be an ACM certificate in us-east-1 (CloudFront takes certificates from there only)."
  }

  validation {
    condition     = var.front_door == null ? true : contains(["secret_header", "oac"], var.front_door.origin_auth)
    error_message = "front_door.origin_auth must be secret_header or oac."
  }

  validation {
    condition     = var.front_door == null ? true : var.front_door.origin_read_timeout >= 1 && var.front_door.origin_read_timeout <= 180 && floor(var.front_door.origin_read_timeout) == var.front_door.origin_read_timeout
    error_message = "front_door.origin_read_timeout must be 1..180 seconds (above 60 only after a CloudFront quota increase)."
  }

  validation {
    condition     = var.front_door == null ? true : var.front_door.origin_keepalive_timeout >= 1 && var.front_door.origin_keepalive_timeout <= 180
    error_message = "front_door.origin_keepalive_timeout must be 1..180 seconds."
  }

  validation {
    condition     = var.front_door == null ? true : contains(["https-only", "redirect-to-https"], var.front_door.viewer_protocol_policy)
    error_message = "front_door.viewer_protocol_policy must be https-only or redirect-to-https: the front door never serves plain HTTP."
  }

  validation {
    condition     = var.front_door == null ? true : contains(["PriceClass_All", "PriceClass_200", "PriceClass_100"], var.front_door.price_class)
    error_message = "front_door.price_class must be PriceClass_All, PriceClass_200 or PriceClass_100."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of the gateway function: the most requests it serves at once (each streamed answer holds one for its whole duration), guaranteed from the account's pool. Null: unreserved. 0 stops it from serving."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrency == null ? true : var.reserved_concurrency >= 0 && floor(var.reserved_concurrency) == var.reserved_concurrency
    error_message = "reserved_concurrency must be a whole number >= 0, or null."
  }
}

variable "alarms" {
  description = "CloudWatch alarms (alarms.tf). gateway_5xx: 5xx answers per period across all routes (a Metrics Insights query on the EMF metrics). routes: routes watched one by one for route_5xx_ratio (share of 5xx) and overhead_p99_ms (p99 of GatewayOverhead, the gateway's own time). lambda_errors / lambda_throttles: AWS/Lambda Errors (both functions) and Throttles (the gateway). EMF alarms are skipped when GATEWAY_EMF_NAMESPACE is set empty."
  type = object({
    enabled            = optional(bool, true)
    period_seconds     = optional(number, 300)
    evaluation_periods = optional(number, 1)
    gateway_5xx        = optional(number, 10)
    routes             = optional(list(string), [])
    route_5xx_ratio    = optional(number, 0.05)
    overhead_p99_ms    = optional(number, 50)
    lambda_errors      = optional(number, 1)
    lambda_throttles   = optional(number, 1)
  })
  default = {}

  validation {
    condition     = contains([60, 120, 180, 240, 300, 600, 900, 1800, 3600], var.alarms.period_seconds)
    error_message = "alarms.period_seconds must be 60, 120, 180, 240, 300, 600, 900, 1800 or 3600."
  }

  validation {
    condition     = var.alarms.route_5xx_ratio > 0 && var.alarms.route_5xx_ratio <= 1
    error_message = "alarms.route_5xx_ratio is a share: more than 0, at most 1."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic ARN notified when an alarm fires and when it clears. Null: the alarms only show in CloudWatch."
  type        = string
  default     = null
}

variable "extra_environment" {
  description = "Further non-secret settings of the gateway function, e.g. { GATEWAY_CACHE_SECONDS = \"5\", GATEWAY_EMF_NAMESPACE = \"AIGateway\", GATEWAY_ADMIN_HOST = \"admin.gateway.example.com\" }. Cannot override the ones this module sets, nor hold the ones that belong in the secret."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : !contains(["GATEWAY_TABLE", "GATEWAY_SECRETS_ARN", "GATEWAY_ISSUER", "GATEWAY_AUDIENCE", "GATEWAY_MAX_TOKEN_TTL_SECONDS", "GATEWAY_MODE"], k)])
    error_message = "extra_environment cannot set GATEWAY_TABLE, GATEWAY_SECRETS_ARN, GATEWAY_ISSUER, GATEWAY_AUDIENCE or GATEWAY_MAX_TOKEN_TTL_SECONDS (the module sets them from its variables), nor GATEWAY_MODE (the module runs the prober itself)."
  }

  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : !contains(["GATEWAY_SIGNING_KEYS", "GATEWAY_ORIGIN_SECRET", "GATEWAY_UPSTREAM_CA_BUNDLE", "GATEWAY_UPSTREAM_CLIENT_CERT", "GATEWAY_UPSTREAM_CLIENT_KEY"], k) && !can(regex("(KEY|SECRET|TOKEN|PASSWORD)", k))])
    error_message = "extra_environment is for settings, not secrets: signing keys, upstream keys, the origin secret and TLS material go into the secret (signing_keys, upstream_api_keys, origin_secret, upstream_* variables)."
  }
}

variable "env_kms_arn" {
  description = "ARN of a customer-managed KMS key to encrypt the functions' environment (table name, settings, the secret's ARN: no secret values) at rest. Null uses the AWS-managed key."
  type        = string
  default     = null
}

variable "log_level" {
  description = "Application log level of both functions (Lambda's advanced logging controls pass it as AWS_LAMBDA_LOG_LEVEL): TRACE, DEBUG, INFO, WARN, ERROR or FATAL."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.log_level)
    error_message = "log_level must be TRACE, DEBUG, INFO, WARN, ERROR or FATAL."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, …, 3653)."
  }
}

variable "vpc_id" {
  description = "VPC of the private vLLM hosts. Null runs the function outside any VPC (only public upstreams are then reachable)."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets (two or more AZs) for the function's network interfaces; required with vpc_id."
  type        = list(string)
  default     = []
}

variable "vllm_cidr_blocks" {
  description = "CIDR blocks of the vLLM hosts. The function's security group allows egress only to these on vllm_port (and to DynamoDB over its gateway endpoint)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.vllm_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "vllm_cidr_blocks must be CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "vllm_port" {
  description = "TCP port the vLLM servers listen on."
  type        = number
  default     = 8000

  validation {
    condition     = var.vllm_port >= 1 && var.vllm_port <= 65535 && floor(var.vllm_port) == var.vllm_port
    error_message = "vllm_port must be a TCP port."
  }
}

variable "create_dynamodb_endpoint" {
  description = "Create a DynamoDB gateway VPC endpoint on route_table_ids (a function in a VPC has no route to DynamoDB otherwise). Set false if the VPC already has one."
  type        = bool
  default     = true
}

variable "route_table_ids" {
  description = "Route tables of subnet_ids, for the DynamoDB gateway endpoint."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "probe_schedule" {
  description = "EventBridge schedule expression of the health prober (one round of probes of every endpoint per run); endpoints are marked down after two failed rounds."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.probe_schedule))
    error_message = "probe_schedule must be an EventBridge schedule expression, rate(...) or cron(...)."
  }
}
