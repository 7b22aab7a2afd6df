"""Document jobs: PDF or images in, a model answer per page out, persisted and resumable."""
