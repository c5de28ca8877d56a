# Runs Tidepool's controllers on Nomad as a service job: any number of them
# serve the API; one leads through the Consul lock and reconciles.
#
#   nomad job run -var tidepool_bin=/usr/local/bin/tidepool jobspecs/tidepool-controller.nomad.hcl
#
# raw_exec runs the binary from the host. Consul and Nomad are found through
# the variables below; every other setting has its default (see README).

variable "tidepool_bin" {
  type        = string
  description = "Absolute path of the tidepool binary on every client node."
}

variable "consul_addr" {
  type    = string
  default = "127.0.0.1:8500"
}

variable "nomad_addr" {
  type    = string
  default = "http://127.0.0.1:4646"
}

variable "allowed_drivers" {
  type        = string
  default     = "docker,podman,exec,java"
  description = "Task drivers pool templates may use, comma-separated. raw_exec only where every tenant is trusted."
}

variable "controllers" {
  type    = number
  default = 2
}

job "tidepool-controller" {
  type        = "service"
  datacenters = ["*"]

  group "controller" {
    count = var.controllers

    network {
      port "http" {}
    }

    service {
      name = "tidepool-controller"
      port = "http"

      check {
        type     = "http"
        path     = "/v1/health"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.tidepool_bin
        args    = ["server", "-http-addr", "${NOMAD_ADDR_http}", "-name", "${NOMAD_ALLOC_ID}", "-allowed-drivers", var.allowed_drivers]
      }

      env {
        CONSUL_HTTP_ADDR = var.consul_addr
        NOMAD_ADDR       = var.nomad_addr
      }

      # A clean stop releases the leader lock at once.
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
