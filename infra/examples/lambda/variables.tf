variable "region" {
  description = "AWS region of the gateway (and of the vLLM VPC)."
  type        = string
  default     = "eu-west-1"
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

variable "signing_keys" {
  description = "GATEWAY_SIGNING_KEYS, the output of `gatewayctl key generate` (pass as TF_VAR_signing_keys)."
  type        = string
  sensitive   = true
}

variable "vllm_api_key" {
  description = "The `--api-key` the vLLM servers were started with; sent upstream as VLLM_API_KEY."
  type        = string
  sensitive   = true
}
