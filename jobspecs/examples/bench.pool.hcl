# One echo member, for scripts/bench-gateway.sh: the gateway, a minimal
# proxy and direct calls all reach the same single process.
pool "bench" {
  template      = "echo.nomad.hcl"
  desired_count = 1

  port "http" {
    number = 8080
    public = true
  }

  port "tcp" {
    number = 9000
  }
}
