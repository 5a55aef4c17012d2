# The routes module renders each route into the exact Workers KV entries and DynamoDB items the
# gateway reads. It has no provider and no resources, so every output is known at plan time.

run "no_routes_render_nothing" {
  command = plan

  assert {
    condition     = length(output.kv_entries) == 0 && length(output.dynamodb_items) == 0
    error_message = "No routes, no entries."
  }
}

run "a_minimal_route_gets_the_cores_defaults" {
  command = plan

  variables {
    routes = {
      llama = {
        host      = "llama.models.example.com"
        endpoints = [{ id = "a", url = "http://10.0.1.5:8000" }]
      }
    }
  }

  # The exact JSON the gateway stores: every field of API.md's route object, the core's defaults
  # (auth required, x-session-id, weight 1, 2 s / 300 s / 120 s, 10 MiB, sandbox), keys sorted.
  assert {
    condition     = output.kv_entries["route:llama"] == "{\"affinity\":{\"cookie\":null,\"header\":\"x-session-id\"},\"auth\":{\"groups\":[],\"required\":true},\"enabled\":true,\"endpoints\":[{\"id\":\"a\",\"url\":\"http://10.0.1.5:8000\",\"weight\":1}],\"forward_set_cookie\":false,\"host\":\"llama.models.example.com\",\"managed_by\":\"terraform\",\"max_body_bytes\":10485760,\"name\":\"llama\",\"sandbox\":true,\"timeouts\":{\"connect_ms\":2000,\"idle_ms\":120000,\"response_ms\":300000},\"upstream_api_key_secret\":null}"
    error_message = "route:llama is not the route JSON the gateway expects: ${output.kv_entries["route:llama"]}"
  }

  assert {
    condition     = output.kv_entries["host:llama.models.example.com"] == "llama"
    error_message = "host:{host} must name the route."
  }

  assert {
    condition     = toset(keys(output.kv_entries)) == toset(["route:llama", "host:llama.models.example.com"])
    error_message = "Exactly one route key and one host key."
  }

  assert {
    condition     = output.route_json["llama"] == output.kv_entries["route:llama"]
    error_message = "KV holds route_json unchanged."
  }

  assert {
    condition     = output.routes["llama"].managed_by == "terraform"
    error_message = "Static routes are marked managed_by = terraform, so the admin API refuses to change them."
  }
}

run "the_same_route_becomes_dynamodb_items" {
  command = plan

  variables {
    routes = {
      llama = {
        host      = "llama.models.example.com"
        endpoints = [{ id = "a", url = "http://10.0.1.5:8000" }]
      }
      qwen = {
        endpoints = [{ id = "a", url = "https://qwen.internal:8443/v1", weight = 1000 }]
      }
    }
  }

  assert {
    condition     = toset(keys(output.dynamodb_items)) == toset(["route#llama", "route#qwen", "host#llama.models.example.com"])
    error_message = "One item per route, one per host."
  }

  assert {
    condition     = output.dynamodb_items["host#llama.models.example.com"] == "{\"entity\":{\"S\":\"host#llama.models.example.com\"},\"item\":{\"S\":\"def\"},\"route_name\":{\"S\":\"llama\"}}"
    error_message = "The host item is entity/item/route_name in DynamoDB JSON: ${output.dynamodb_items["host#llama.models.example.com"]}"
  }

  assert {
    condition = jsondecode(output.dynamodb_items["route#qwen"]) == {
      entity = { S = "route#qwen" }
      item   = { S = "def" }
      route  = { S = output.route_json["qwen"] }
    }
    error_message = "The route item is entity/item/route in DynamoDB JSON, route holding the route JSON."
  }

  assert {
    condition     = jsondecode(output.route_json["qwen"]).host == null && jsondecode(output.route_json["qwen"]).endpoints[0].weight == 1000
    error_message = "qwen has no host and keeps its weight."
  }
}

run "the_example_route_keeps_every_field" {
  command = plan

  variables {
    routes = {
      "llama-prod" = {
        host = "llama.models.example.com"
        endpoints = [
          { id = "gpu-a", url = "http://10.0.1.5:8000", weight = 2, via = "VLLM_LLAMA_A" },
          { id = "gpu-b", url = "http://10.0.1.6:8000", weight = 1 },
        ]
        auth                    = { required = true, groups = ["ml-team", "partner-acme"] }
        affinity                = { header = "X-Conversation", cookie = "sid", fallback = "prefix", balance_factor = 1.5 }
        upstream_api_key_secret = "VLLM_API_KEY"
        timeouts                = { connect_ms = 60000, response_ms = 3600000, idle_ms = 1000 }
        max_body_bytes          = 1073741824
        rate_limit_rpm          = 600
        sandbox                 = false
        forward_set_cookie      = true
      }
    }
  }

  assert {
    condition = jsondecode(output.route_json["llama-prod"]) == {
      name    = "llama-prod"
      host    = "llama.models.example.com"
      enabled = true
      endpoints = [
        { id = "gpu-a", url = "http://10.0.1.5:8000", weight = 2, via = "VLLM_LLAMA_A" },
        { id = "gpu-b", url = "http://10.0.1.6:8000", weight = 1 },
      ]
      auth                    = { required = true, groups = ["ml-team", "partner-acme"] }
      affinity                = { header = "X-Conversation", cookie = "sid", fallback = "prefix", balance_factor = 1.5 }
      upstream_api_key_secret = "VLLM_API_KEY"
      timeouts                = { connect_ms = 60000, response_ms = 3600000, idle_ms = 1000 }
      max_body_bytes          = 1073741824
      rate_limit_rpm          = 600
      sandbox                 = false
      forward_set_cookie      = true
      managed_by              = "terraform"
    }
    error_message = "The stored route differs from the input: ${output.route_json["llama-prod"]}"
  }

  # `via`, `fallback`, `balance_factor` and `rate_limit_rpm` are written only when set: an endpoint
  # without `via` has no `via` key (not null).
  assert {
    condition     = !strcontains(output.route_json["llama-prod"], "\"via\":null")
    error_message = "Unset via must be left out, not written as null."
  }
}

run "unset_optional_fields_are_left_out" {
  command = plan

  variables {
    routes = { a = {} }
  }

  assert {
    condition     = !can(jsondecode(output.route_json["a"]).rate_limit_rpm) && !can(jsondecode(output.route_json["a"]).affinity.fallback) && !can(jsondecode(output.route_json["a"]).affinity.balance_factor)
    error_message = "rate_limit_rpm, affinity.fallback and affinity.balance_factor are written only when set."
  }

  assert {
    condition     = keys(output.kv_entries) == ["route:a"]
    error_message = "A route without a host has no host key."
  }
}

run "renaming_a_route_changes_every_key" {
  command = plan

  variables {
    routes = { "llama-v2" = { host = "llama.models.example.com" } }
  }

  # for_each in routes/edge and routes/lambda is keyed by these, so the old entries are destroyed.
  assert {
    condition     = toset(keys(output.kv_entries)) == toset(["route:llama-v2", "host:llama.models.example.com"]) && output.kv_entries["host:llama.models.example.com"] == "llama-v2"
    error_message = "The renamed route's keys and host entry follow the new name."
  }

  assert {
    condition     = toset(keys(output.dynamodb_items)) == toset(["route#llama-v2", "host#llama.models.example.com"])
    error_message = "The renamed route's items follow the new name."
  }
}

run "good_routes_at_the_edges_of_every_rule" {
  command = plan

  variables {
    routes = {
      a                                                               = {}
      "0"                                                             = { endpoints = [{ id = "x", url = "https://vllm.internal/prefix/v1" }] }
      aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa = { enabled = false }
      public                                                          = { auth = { required = false }, endpoints = [{ id = "v6", url = "http://[fd00::1]:8000" }] }
      cookie                                                          = { affinity = { header = "X-Conversation", cookie = "sid" } }
      unbounded                                                       = { affinity = { fallback = "none", balance_factor = 0 } }
      tokened                                                         = { affinity = { fallback = "token", balance_factor = 10 } }
      hosted                                                          = { host = "a.example.com", upstream_api_key_secret = "VLLM_API_KEY_2" }
      named                                                           = { name = "named" }
      via                                                             = { endpoints = [{ id = "a", url = "http://10.0.0.1:65535", weight = 1000, via = "VLLM_A" }] }
      groups                                                          = { auth = { groups = ["partner:acme.corp", "desk-infrastructure-team-members"] } }
      limits                                                          = { timeouts = { connect_ms = 1, response_ms = 1, idle_ms = 3600000 }, max_body_bytes = 1, rate_limit_rpm = 1000000 }
    }
  }

  assert {
    condition     = length(output.route_json) == 12
    error_message = "Every good route is accepted and rendered."
  }
}

run "models_become_model_routings_index" {
  command = plan

  variables {
    routes = {
      llama = {
        endpoints = [{ id = "a", url = "http://10.0.1.5:8000" }]
        models    = ["llama-3.1-8b", "llama"]
      }
      mistral = {
        endpoints = [{ id = "m", url = "http://10.0.1.7:8000" }]
        models    = ["mistralai/Mistral-7B-Instruct-v0.3"]
      }
    }
  }

  assert {
    condition     = output.kv_entries["model:llama"] == "llama" && output.kv_entries["model:llama-3.1-8b"] == "llama" && output.kv_entries["model:mistralai/Mistral-7B-Instruct-v0.3"] == "mistral"
    error_message = "model:{model} must name the route serving it."
  }

  assert {
    condition     = jsondecode(output.dynamodb_items["models#llama"]) == { entity = { S = "models" }, item = { S = "llama" }, route_name = { S = "llama" } }
    error_message = "models/{model} must carry route_name: ${output.dynamodb_items["models#llama"]}"
  }

  assert {
    condition     = jsondecode(output.kv_entries["route:llama"]).models == ["llama-3.1-8b", "llama"]
    error_message = "The route JSON lists its models."
  }

  assert {
    condition     = !can(jsondecode(output.kv_entries["route:mistral"]).rate_limit_rpm)
    error_message = "Unset optional fields stay out of the JSON."
  }
}

run "a_model_served_twice_is_refused" {
  command = plan

  variables {
    routes = {
      a = { models = ["llama"] }
      b = { models = ["llama"] }
    }
  }

  expect_failures = [var.routes]
}

run "v1_is_reserved" {
  command = plan

  variables {
    routes = {
      v1 = {}
    }
  }

  expect_failures = [var.routes]
}

run "usage_always_is_written_and_client_is_the_default_left_out" {
  command = plan

  variables {
    routes = {
      counted = { usage = "always" }
      plain   = { usage = "client" }
    }
  }

  assert {
    condition     = jsondecode(output.kv_entries["route:counted"]).usage == "always" && !can(jsondecode(output.kv_entries["route:plain"]).usage)
    error_message = "usage = always is written; client (the default) is left out as the gateway leaves it out."
  }
}

run "an_unknown_usage_mode_is_refused" {
  command = plan

  variables {
    routes = {
      bad = { usage = "sometimes" }
    }
  }

  expect_failures = [var.routes]
}

run "budgets_are_written_as_terraforms" {
  command = plan

  variables {
    budgets = {
      "contracts/C-2026-017"         = { tokens_per_minute = 200000, tokens_per_month = 50000000 }
      "service-accounts/nightly-etl" = { tokens_per_day = 1000000 }
    }
  }

  assert {
    condition     = jsondecode(output.kv_entries["budget:contracts/C-2026-017"]) == { tokens_per_minute = 200000, tokens_per_month = 50000000, managed_by = "terraform" }
    error_message = "budget:{kind}/{id} holds the budget, unset limits left out: ${output.kv_entries["budget:contracts/C-2026-017"]}"
  }

  assert {
    condition     = jsondecode(output.dynamodb_items["budgets#service-accounts/nightly-etl"]).entity.S == "budgets" && jsondecode(jsondecode(output.dynamodb_items["budgets#service-accounts/nightly-etl"]).budget.S).tokens_per_day == 1000000
    error_message = "budgets/{kind}/{id} with the budget JSON."
  }
}

run "a_budget_needs_a_known_kind_and_a_limit" {
  command = plan

  variables {
    budgets = {
      "partners/acme" = {}
    }
  }

  expect_failures = [var.budgets]
}
