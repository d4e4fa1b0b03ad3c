variable "project" {
  description = "GCP project id"
  type        = string
}

variable "region" {
  description = "Region for Cloud Run, Cloud SQL, the bucket and the GKE cluster"
  type        = string
  default     = "us-central1"
}

variable "image" {
  description = "The comfy-cloud image (built from the repository's Dockerfile), e.g. REGION-docker.pkg.dev/PROJECT/comfy/comfy-cloud:TAG"
  type        = string
}

variable "db_tier" {
  description = "Cloud SQL machine tier"
  type        = string
  default     = "db-custom-2-7680"
}

variable "gpu_type" {
  description = "Accelerator of the inference node pool"
  type        = string
  default     = "nvidia-l4"
}

variable "gpu_machine_type" {
  type    = string
  default = "g2-standard-8"
}

variable "gpu_nodes_max" {
  description = "Upper bound of the autoscaled GPU node pool (one ComfyUI per GPU)"
  type        = number
  default     = 4
}

variable "ingest_public" {
  description = "Let unauthenticated internet traffic reach ingest (it authenticates every request itself)"
  type        = bool
  default     = true
}
