variable "region" {
  description = "AWS region of the gateway (and of the vLLM VPC)."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "staging or production: names the function, table and alarms (ai-gateway-<environment>). Keep one state per environment (a workspace or a backend key each)."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "architecture" {
  description = "arm64 or x86_64: what `cargo lambda build` built (arm64 with --arm64)."
  type        = string
  default     = "arm64"
}

variable "vpc_id" {
  description = "VPC of the vLLM hosts."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the function, in two or more availability zones."
  type        = list(string)
}

variable "route_table_ids" {
  description = "Route tables of those subnets (for the DynamoDB gateway endpoint)."
  type        = list(string)
}

variable "vllm_cidr_blocks" {
  description = "Where the vLLM hosts are; the function may reach only these, on port 8000."
  type        = list(string)
  default     = ["10.0.1.0/24"]
}

variable "vllm_hosts" {
  description = "The two vLLM servers' addresses (in vllm_cidr_blocks)."
  type        = list(string)
  default     = ["10.0.1.5", "10.0.1.6"]
}

variable "vllm_scheme" {
  description = "http, or https when the vLLM hosts serve TLS (then give upstream_ca_bundle for a private CA, and the client certificate if they require one)."
  type        = string
  default     = "http"

  validation {
    condition     = contains(["http", "https"], var.vllm_scheme)
    error_message = "vllm_scheme must be http or https."
  }
}

variable "signing_keys" {
  description = "GATEWAY_SIGNING_KEYS, the output of `gatewayctl key generate` (TF_VAR_signing_keys on every plan and apply). Ephemeral: written to Secrets Manager, never to the plan or state."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "vllm_api_key" {
  description = "The `--api-key` the vLLM servers were started with; sent upstream as VLLM_API_KEY. Ephemeral, like signing_keys."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "upstream_ca_bundle" {
  description = "PEM of the private CA that signs the vLLM hosts' certificates (TF_VAR_upstream_ca_bundle=\"$(cat ca.pem)\"), or null for http or publicly trusted certificates."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "upstream_client_cert" {
  description = "PEM client certificate for vLLM hosts that require mutual TLS, or null."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "upstream_client_key" {
  description = "PEM private key of upstream_client_cert, or null."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "upstream_tls" {
  description = "true when upstream_ca_bundle or the client certificate is given: the prober then gets the TLS material too (in a secret of its own)."
  type        = bool
  default     = false
}

variable "secrets_version" {
  description = "Bump to write changed secret values (write-only values leave nothing to compare)."
  type        = number
  default     = 1
}

variable "domain_name" {
  description = "The gateway's own hostname behind a CloudFront front door (e.g. gateway.example.com), or null to use the Function URL as is."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name: the certificate's DNS validation records and the A/AAAA aliases go there."
  type        = string
  default     = null
}

variable "web_acl_id" {
  description = "ARN of a WAFv2 web ACL (scope CLOUDFRONT, so created in us-east-1) for the front door, or null."
  type        = string
  default     = null
}

variable "alarm_topic_arn" {
  description = "SNS topic for the CloudWatch alarms, or null."
  type        = string
  default     = null
}
