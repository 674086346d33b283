"""Writing and publishing datasets: Hub-layout folder, dataset card, manifest, versions."""
