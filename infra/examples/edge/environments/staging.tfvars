# terraform workspace select staging && terraform apply -var-file=environments/staging.tfvars
# (account_id and zone_id from TF_VAR_account_id / TF_VAR_zone_id). No secrets here.
environment      = "staging"
gateway_hostname = "gateway.staging.example.com"
model_hostname   = "llama.models.staging.example.com"
vllm_hosts       = ["10.0.2.5", "10.0.2.6"]
