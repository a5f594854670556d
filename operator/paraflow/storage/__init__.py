"""MinIO side of the operator: read the partitioner's plan, write the result manifest."""
