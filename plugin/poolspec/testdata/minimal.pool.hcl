pool "web" {
  template = "echo.nomad.hcl"

  port "http" {
    number = 8080
  }
}
