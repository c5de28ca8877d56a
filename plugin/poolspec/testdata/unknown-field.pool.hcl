pool "web" {
  template      = "echo.nomad.hcl"
  desired_cont  = 3

  port "http" {
    number = 8080
  }
}
