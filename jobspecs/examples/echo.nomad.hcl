# Member template for the example echo pool: a Nomad jobspec with exactly
# one task group. Tidepool stamps the group once per member (group name =
# member id) and tags its services so the gateway can find each member.
#
# raw_exec finds tidepool-echo on the Nomad agent's PATH; `make dev` puts
# bin/ there. Elsewhere, use an absolute path.

job "echo" {
  type        = "service"
  datacenters = ["*"]

  group "echo" {
    network {
      port "http" {}
      port "tcp" {}
    }

    # Nomad restarts a crashed member twice; after that the member is dead
    # and Tidepool replaces it.
    restart {
      attempts = 2
      interval = "1m"
      delay    = "1s"
      mode     = "fail"
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

    service {
      name = "echo-tcp"
      port = "tcp"

      check {
        type     = "tcp"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "echo" {
      driver = "raw_exec"

      config {
        command = "tidepool-echo"
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
