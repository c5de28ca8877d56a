pool "web" {
  template = "nope.nomad.hcl"

  port "http" {
    number = 8080
  }
}
