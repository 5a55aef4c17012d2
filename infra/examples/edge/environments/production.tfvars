# terraform workspace select production && terraform apply -var-file=environments/production.tfvars
# (account_id and zone_id from TF_VAR_account_id / TF_VAR_zone_id). No secrets here.
environment      = "production"
gateway_hostname = "gateway.example.com"
model_hostname   = "llama.models.example.com"
vllm_hosts       = ["10.0.1.5", "10.0.1.6"]
