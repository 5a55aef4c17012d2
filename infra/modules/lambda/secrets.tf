# Secrets in Secrets Manager, never in the functions' environment or in Terraform state.
#
# The gateway's secret is ONE JSON object of string values, read once per cold start through
# GATEWAY_SECRETS_ARN:
#
#   {
#     "GATEWAY_SIGNING_KEYS":         "<the JSON array of `gatewayctl key generate`, as a string>",
#     "VLLM_API_KEY":                 "<any upstream key a route names in upstream_api_key_secret>",
#     "GATEWAY_ORIGIN_SECRET":        "<the value CloudFront sends as x-origin-verify>",
#     "GATEWAY_UPSTREAM_CA_BUNDLE":   "<PEM: CAs that sign the vLLM hosts' certificates>",
#     "GATEWAY_UPSTREAM_CLIENT_CERT": "<PEM: the client certificate the gateway presents>",
#     "GATEWAY_UPSTREAM_CLIENT_KEY":  "<PEM: its private key>"
#   }
#
# Only the keys in use are present. The prober's secret (when the vLLM hosts need TLS material)
# holds only the three GATEWAY_UPSTREAM_* keys.
#
# Three ways to run it:
#   1. secrets_arn = null, secrets_version = 1 (default): this module creates the secrets and
#      writes the values from the ephemeral, sensitive variables with the write-only argument
#      `secret_string_wo` (Terraform >= 1.11): they reach AWS but neither the plan nor the state.
#      Bump secrets_version to write changed values (a write-only value has no diff to show).
#   2. secrets_arn = null, secrets_version = null: this module creates the secrets (and the IAM
#      and KMS around them) but writes no value; put them with
#      `aws secretsmanager put-secret-value --secret-id <secret_arn> --secret-string file://…`.
#   3. secrets_arn = "<arn>": an existing secret made elsewhere; the values never pass through
#      Terraform. With upstream_tls, give probe_secrets_arn as well.

locals {
  manage_secret = var.secrets_arn == null
  secret_arn    = local.manage_secret ? aws_secretsmanager_secret.gateway[0].arn : var.secrets_arn

  # The prober reads a secret only when the vLLM hosts want TLS material it must present or trust.
  probe_has_secret = var.probe_secrets_arn != null || (var.upstream_tls && local.manage_secret)
  probe_secret_arn = var.probe_secrets_arn != null ? var.probe_secrets_arn : (
    var.upstream_tls && local.manage_secret ? aws_secretsmanager_secret.probe[0].arn : null
  )

  # Ephemeral (derived from ephemeral variables): usable only in write-only arguments.
  upstream_tls_values = {
    for k, v in {
      GATEWAY_UPSTREAM_CA_BUNDLE   = var.upstream_ca_bundle
      GATEWAY_UPSTREAM_CLIENT_CERT = var.upstream_client_cert
      GATEWAY_UPSTREAM_CLIENT_KEY  = var.upstream_client_key
    } : k => v if v != null
  }
  secret_values = merge(
    var.upstream_api_keys,
    local.upstream_tls_values,
    { for k, v in { GATEWAY_SIGNING_KEYS = var.signing_keys, GATEWAY_ORIGIN_SECRET = local.origin_secret } : k => v if v != null },
  )
}

resource "aws_secretsmanager_secret" "gateway" {
  count       = local.manage_secret ? 1 : 0
  name_prefix = "${var.name}-"
  description = "AI gateway ${var.name}: signing keys, upstream keys, origin secret, upstream TLS (one JSON object)"
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "gateway" {
  count     = local.manage_secret && var.secrets_version != null ? 1 : 0
  secret_id = aws_secretsmanager_secret.gateway[0].id
  # Write-only: sent to AWS on create and whenever secret_string_wo_version changes, never stored.
  secret_string_wo         = jsonencode(local.secret_values)
  secret_string_wo_version = var.secrets_version

  lifecycle {
    precondition {
      condition     = var.signing_keys != null
      error_message = "This module writes the gateway's secret (secrets_version is set): give signing_keys (TF_VAR_signing_keys) on every plan and apply, or set secrets_version = null and put the values yourself."
    }
    # A new origin secret (the front door switched on, or origin_secret changed) is written at
    # once, without waiting for a secrets_version bump: the gateway must know what CloudFront sends.
    replace_triggered_by = [terraform_data.origin_secret_fingerprint]
  }
}

resource "aws_secretsmanager_secret" "probe" {
  count       = var.upstream_tls && local.manage_secret ? 1 : 0
  name_prefix = "${var.name}-probe-"
  description = "AI gateway ${var.name} prober: upstream TLS material only (one JSON object)"
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "probe" {
  count                    = var.upstream_tls && local.manage_secret && var.secrets_version != null ? 1 : 0
  secret_id                = aws_secretsmanager_secret.probe[0].id
  secret_string_wo         = jsonencode(local.upstream_tls_values)
  secret_string_wo_version = var.secrets_version
}

# A hash of the origin secret (itself in state anyway: CloudFront's origin configuration holds it),
# so that a new one rewrites the gateway's secret.
resource "terraform_data" "origin_secret_fingerprint" {
  input = local.origin_secret == null ? "none" : sha256(local.origin_secret)
}
