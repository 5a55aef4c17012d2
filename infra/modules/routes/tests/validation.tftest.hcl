# Every validation of `var.routes` refuses its bad input at plan time. These are the routes
# gateway-core's Route::validate refuses (infra/check cross-checks the same inputs against the core
# itself), plus what only Terraform can see: key-looking values anywhere in a route, two routes on one
# host, and `name` disagreeing with its key.

run "refuses_bad_name" {
  command = plan

  variables {
    routes = { "Bad_Name" = {} }
  }

  expect_failures = [var.routes]
}

run "refuses_reserved_e" {
  command = plan

  variables {
    routes = { "e" = {} }
  }

  expect_failures = [var.routes]
}

run "refuses_reserved_prefix" {
  command = plan

  variables {
    routes = { "_x" = {} }
  }

  expect_failures = [var.routes]
}

run "refuses_leading_dash" {
  command = plan

  variables {
    routes = { "-a" = {} }
  }

  expect_failures = [var.routes]
}

run "refuses_64_characters" {
  command = plan

  variables {
    routes = { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" = {} }
  }

  expect_failures = [var.routes]
}

run "refuses_name_differs_from_key" {
  command = plan

  variables {
    routes = { "a" = { name = "b" } }
  }

  expect_failures = [var.routes]
}

run "refuses_uppercase_host" {
  command = plan

  variables {
    routes = { "host" = { host = "Llama.example.com" } }
  }

  expect_failures = [var.routes]
}

run "refuses_host_with_a_trailing_dot" {
  command = plan

  variables {
    routes = { "host" = { host = "llama.example.com." } }
  }

  expect_failures = [var.routes]
}

run "refuses_host_over_253_characters" {
  command = plan

  variables {
    routes = { "host" = { host = join(".", [for i in range(64) : "abc"]) } }
  }

  expect_failures = [var.routes]
}

run "refuses_more_than_256_endpoints" {
  command = plan

  variables {
    routes = { "many" = { endpoints = [for i in range(257) : { id = "e${i}", url = "http://10.0.0.1:8000" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_bad_endpoint_id" {
  command = plan

  variables {
    routes = { "epid" = { endpoints = [{ id = "a b", url = "http://10.0.0.1:8000" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_duplicate_endpoint_ids" {
  command = plan

  variables {
    routes = { "dup" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000" }, { id = "a", url = "http://10.0.0.2:8000" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_ftp_url" {
  command = plan

  variables {
    routes = { "ftp" = { endpoints = [{ id = "a", url = "ftp://10.0.0.1/" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_credentials_in_url" {
  command = plan

  variables {
    routes = { "creds" = { endpoints = [{ id = "a", url = "http://user:pw@10.0.0.1:8000" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_query_in_url" {
  command = plan

  variables {
    routes = { "query" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000/v1?api_key=abc" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_fragment_in_url" {
  command = plan

  variables {
    routes = { "frag" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000/#x" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_no_host_in_url" {
  command = plan

  variables {
    routes = { "nohost" = { endpoints = [{ id = "a", url = "http:///v1" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_port_over_65535" {
  command = plan

  variables {
    routes = { "port" = { endpoints = [{ id = "a", url = "http://10.0.0.1:65536" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_zero_weight" {
  command = plan

  variables {
    routes = { "w0" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000", weight = 0 }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_weight_over_1000" {
  command = plan

  variables {
    routes = { "w1001" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000", weight = 1001 }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_fractional_weight" {
  command = plan

  variables {
    routes = { "wf" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000", weight = 1.5 }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_bad_via" {
  command = plan

  variables {
    routes = { "via" = { endpoints = [{ id = "a", url = "http://10.0.0.1:8000", via = "vllm-a" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_bad_group" {
  command = plan

  variables {
    routes = { "group" = { auth = { groups = ["ml team"] } } }
  }

  expect_failures = [var.routes]
}

run "refuses_bad_header" {
  command = plan

  variables {
    routes = { "header" = { affinity = { header = "x session" } } }
  }

  expect_failures = [var.routes]
}

run "refuses_bad_cookie" {
  command = plan

  variables {
    routes = { "cookie" = { affinity = { cookie = "a;b" } } }
  }

  expect_failures = [var.routes]
}

run "refuses_bad_fallback" {
  command = plan

  variables {
    routes = { "fb" = { affinity = { fallback = "sometimes" } } }
  }

  expect_failures = [var.routes]
}

run "refuses_factor_under_one" {
  command = plan

  variables {
    routes = { "bf" = { affinity = { balance_factor = 0.5 } } }
  }

  expect_failures = [var.routes]
}

run "refuses_factor_over_ten" {
  command = plan

  variables {
    routes = { "bf" = { affinity = { balance_factor = 10.5 } } }
  }

  expect_failures = [var.routes]
}

run "refuses_the_gateway_s_own_key_as_upstream_secret" {
  command = plan

  variables {
    routes = { "own" = { upstream_api_key_secret = "GATEWAY_SIGNING_KEYS" } }
  }

  expect_failures = [var.routes]
}

run "refuses_the_lambda_role_s_credentials_as_upstream_secret" {
  command = plan

  variables {
    routes = { "aws" = { upstream_api_key_secret = "AWS_SECRET_ACCESS_KEY" } }
  }

  expect_failures = [var.routes]
}

run "refuses_a_lambda_variable_as_upstream_secret" {
  command = plan

  variables {
    routes = { "lam" = { upstream_api_key_secret = "LAMBDA_TASK_ROOT" } }
  }

  expect_failures = [var.routes]
}

run "refuses_a_cloudflare_variable_as_upstream_secret" {
  command = plan

  variables {
    routes = { "cf" = { upstream_api_key_secret = "CLOUDFLARE_API_TOKEN" } }
  }

  expect_failures = [var.routes]
}

run "refuses_an_underscore_variable_as_upstream_secret" {
  command = plan

  variables {
    routes = { "us" = { upstream_api_key_secret = "_HANDLER" } }
  }

  expect_failures = [var.routes]
}

run "refuses_key_value_instead_of_name" {
  command = plan

  variables {
    routes = { "val" = { upstream_api_key_secret = "sk-live-0123456789abcdef" } }
  }

  expect_failures = [var.routes]
}

run "refuses_api_key_as_a_group" {
  command = plan

  variables {
    routes = { "a" = { auth = { groups = ["sk-proj-abcdefghijklmnopqrstuvwxyz012345"] } } }
  }

  expect_failures = [var.routes]
}

run "refuses_hugging_face_token_in_a_url_path" {
  command = plan

  variables {
    routes = { "a" = { endpoints = [{ id = "x", url = "http://10.0.0.1:8000/hf_abcdefghijklmnopqrstuvwxyz" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_jwt_in_a_header_name" {
  command = plan

  variables {
    routes = { "a" = { affinity = { header = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0" } } }
  }

  expect_failures = [var.routes]
}

run "refuses_aws_access_key_id_in_a_url_path" {
  command = plan

  variables {
    routes = { "a" = { endpoints = [{ id = "x", url = "http://10.0.0.1:8000/AKIAABCDEFGHIJKLMNOP" }] } }
  }

  expect_failures = [var.routes]
}

run "refuses_zero_connect_timeout" {
  command = plan

  variables {
    routes = { "t0" = { timeouts = { connect_ms = 0 } } }
  }

  expect_failures = [var.routes]
}

run "refuses_connect_timeout_over_a_minute" {
  command = plan

  variables {
    routes = { "t1" = { timeouts = { connect_ms = 60001 } } }
  }

  expect_failures = [var.routes]
}

run "refuses_response_timeout_over_an_hour" {
  command = plan

  variables {
    routes = { "t2" = { timeouts = { response_ms = 3600001 } } }
  }

  expect_failures = [var.routes]
}

run "refuses_idle_timeout_under_a_second" {
  command = plan

  variables {
    routes = { "i0" = { timeouts = { idle_ms = 999 } } }
  }

  expect_failures = [var.routes]
}

run "refuses_zero_rate_limit" {
  command = plan

  variables {
    routes = { "r0" = { rate_limit_rpm = 0 } }
  }

  expect_failures = [var.routes]
}

run "refuses_fractional_rate_limit" {
  command = plan

  variables {
    routes = { "r1" = { rate_limit_rpm = 1.5 } }
  }

  expect_failures = [var.routes]
}

run "refuses_zero_body_limit" {
  command = plan

  variables {
    routes = { "b0" = { max_body_bytes = 0 } }
  }

  expect_failures = [var.routes]
}

run "refuses_body_limit_over_1_gib" {
  command = plan

  variables {
    routes = { "b1" = { max_body_bytes = 1073741825 } }
  }

  expect_failures = [var.routes]
}

run "refuses_two_routes_on_one_host" {
  command = plan

  variables {
    routes = {
      a = { host = "h.example.com" }
      b = { host = "h.example.com" }
    }
  }

  expect_failures = [var.routes]
}

# The good neighbour of each case above passes (so the cases fail for their own reason).
run "accepts_the_neighbours_of_the_refused_inputs" {
  command = plan

  variables {
    routes = {
      a = {
        host      = "h.example.com"
        endpoints = [for i in range(256) : { id = "e${i}", url = "http://10.0.0.1:65535/v1", weight = 1000, via = "VLLM_A" }]
        auth      = { groups = ["ml-team", "partner:acme.corp"] }
        affinity  = { header = "X-Session", cookie = "sid", fallback = "prefix", balance_factor = 10 }
        # A name, not a value: the key-looking heuristic is about values such as sk-…
        upstream_api_key_secret = "VLLM_API_KEY"
        timeouts                = { connect_ms = 60000, response_ms = 3600000, idle_ms = 1000 }
        rate_limit_rpm          = 1
        max_body_bytes          = 1073741824
      }
      b = { host = "i.example.com" }
    }
  }

  assert {
    condition     = length(jsondecode(output.route_json["a"]).endpoints) == 256
    error_message = "256 endpoints are allowed."
  }
}
