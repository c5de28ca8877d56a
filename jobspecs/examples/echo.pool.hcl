# The example pool `make dev` applies: three echo members behind the gateway
# at <owner>--echo--8080.localhost (HTTP) and port 9000 (TCP echo).
pool "echo" {
  template      = "echo.nomad.hcl"
  desired_count = 3

  port "http" {
    number   = 8080
    protocol = "http"
    public   = true
  }

  port "tcp" {
    number   = 9000
    protocol = "tcp"
  }

  methods {
    names = ["echo", "sleep"]
    port  = "http"
    path  = "/rpc"
  }

  drain {
    timeout      = "15s"
    grace_period = "30s"
  }
}
