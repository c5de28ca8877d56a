# A member template: a Nomad jobspec with exactly one task group. Tidepool
# stamps the group once per member (group name = member id). `make dev` also
# registers it as-is so the agents have something to run.

variable "echo_bin" {
  type        = string
  description = "Absolute path of the tidepool-echo binary (`make build` puts it in bin/)."
}

job "echo" {
  type        = "service"
  datacenters = ["*"]

  group "echo" {
    network {
      port "http" {}
      port "tcp" {}
    }

    service {
      name = "echo"
      port = "http"

      check {
        type     = "http"
        path     = "/healthz"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "echo" {
      driver = "raw_exec"

      config {
        command = var.echo_bin
      }

      # Long enough for in-flight requests to finish after SIGTERM.
      kill_timeout = "20s"

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
