# GKE for the inference fleet: one pod per GPU (ComfyUI + its inference instance), autoscaled.
# Deploy the pods with `skaffold run -p gke` (manifests in infrastructure/k8s).

resource "google_container_cluster" "inference" {
  name                     = "comfy-cloud"
  location                 = var.region
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true
  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }
  depends_on = [google_project_service.apis]
}

resource "google_container_node_pool" "gpu" {
  name     = "gpu"
  cluster  = google_container_cluster.inference.name
  location = var.region
  autoscaling {
    min_node_count = 0
    max_node_count = var.gpu_nodes_max
  }
  node_config {
    machine_type = var.gpu_machine_type
    guest_accelerator {
      type  = var.gpu_type
      count = 1
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }
    workload_metadata_config { mode = "GKE_METADATA" }
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]
  }
}
