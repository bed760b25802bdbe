"""Running a matrix: plan, execute each cell in an executor (inline, child process, Ray), resume, merge."""
