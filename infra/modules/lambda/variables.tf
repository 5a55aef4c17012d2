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
  description = "GATEWAY_SIGNING_KEYS: the JSON array of signing keys (`gatewayctl key generate`). Sensitive; it lands in the function's environment, encrypted with env_kms_arn when set."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^\\s*\\[", var.signing_keys))
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
  description = "Upstream API key values by secret name, e.g. { VLLM_API_KEY = \"…\" }: each becomes an environment variable that routes name in upstream_api_key_secret. Sensitive; never put these in routes."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for k in keys(var.upstream_api_keys) : can(regex("^[A-Z0-9_]{1,128}$", k)) && !startswith(k, "GATEWAY_") && !startswith(k, "AWS_") && k != "_HANDLER" && k != "LAMBDA_TASK_ROOT"])
    error_message = "upstream_api_keys names must match ^[A-Z0-9_]{1,128}$ and may not be GATEWAY_*, AWS_* or reserved Lambda variables."
  }
}

variable "extra_environment" {
  description = "Further non-secret settings of the gateway function, e.g. { GATEWAY_CACHE_SECONDS = \"5\", GATEWAY_EMF_NAMESPACE = \"AIGateway\" }. Cannot override the ones this module sets."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : !contains(["GATEWAY_TABLE", "GATEWAY_SIGNING_KEYS", "GATEWAY_ISSUER", "GATEWAY_AUDIENCE", "GATEWAY_MAX_TOKEN_TTL_SECONDS", "GATEWAY_MODE"], k)])
    error_message = "extra_environment cannot set GATEWAY_TABLE, GATEWAY_SIGNING_KEYS, GATEWAY_ISSUER, GATEWAY_AUDIENCE or GATEWAY_MAX_TOKEN_TTL_SECONDS (use the dedicated variables), nor GATEWAY_MODE (the module runs the prober itself)."
  }
}

variable "env_kms_arn" {
  description = "ARN of a customer-managed KMS key to encrypt the function's environment (signing keys, upstream keys) at rest. Null uses the AWS-managed key."
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
