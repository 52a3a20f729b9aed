"""What the tests and benchmarks build: tiny pipelines with random weights, the published
architectures as configurations, and the stock-diffusers references the methods are checked against."""
