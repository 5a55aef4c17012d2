# A complete Lambda deployment: table, function with a streaming Function URL inside the vLLM VPC,
# and one static route over a pool of two private vLLM hosts.

locals {
  routes = {
    "llama-prod" = {
      # The Lambda reaches private addresses through its VPC attachment; no `via` needed.
      endpoints = [
        { id = "gpu-a", url = "http://10.0.1.5:8000", weight = 2 },
        { id = "gpu-b", url = "http://10.0.1.6:8000", weight = 1 },
      ]
      # The internal team and one partner (partner tokens name the route in `routes`).
      auth = { required = true, groups = ["ml-team", "partner-acme"] }
      # Clients send a session id so a conversation stays on one vLLM instance (prefix cache).
      affinity                = { header = "x-session-id" }
      upstream_api_key_secret = "VLLM_API_KEY"
      timeouts                = { connect_ms = 2000, response_ms = 300000, idle_ms = 120000 }
      max_body_bytes          = 10485760
      # Each token may send 600 requests a minute here unless it carries its own limit.
      rate_limit_rpm = 600
    }
  }
}

module "lambda" {
  source = "../../modules/lambda"

  name              = "ai-gateway"
  artifact_path     = "${path.root}/../../../target/lambda/gateway-lambda/bootstrap.zip"
  architecture      = var.architecture
  signing_keys      = var.signing_keys
  upstream_api_keys = { VLLM_API_KEY = var.vllm_api_key }
  vpc_id            = var.vpc_id
  subnet_ids        = var.subnet_ids
  route_table_ids   = var.route_table_ids
  vllm_cidr_blocks  = var.vllm_cidr_blocks
  vllm_port         = 8000
}

module "routes" {
  source = "../../modules/routes/lambda"

  table_name = module.lambda.table_name
  routes     = local.routes
}
