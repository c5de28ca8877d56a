pool "web" {
  template      = "echo.nomad.hcl"
  desired_count = 2.5

  port "http" {
    number = 8080
  }
}
