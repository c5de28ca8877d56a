pool "web" {
  template      = "echo.nomad.hcl"
  desired_count = "three"

  port "http" {
    number = 8080
  }
}
