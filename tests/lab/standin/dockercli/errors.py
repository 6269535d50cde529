"""DockerError: what the real CLI prints and exits with when a command fails."""

PULL_FAILURE, BUILD_FAILURE = 18, 17  # compose v2.29's exit codes for these failure categories


class DockerError(Exception):
    """An error as the real CLI reports it: MESSAGE on stderr, STDOUT (if any) on stdout, CODE."""

    def __init__(self, message, code=1, stdout=None):
        super().__init__(message)
        self.code = code
        self.stdout = stdout


class Unsupported(DockerError):
    def __init__(self, what):
        super().__init__(f"docker: '{what}' is not supported by the NetMon lab stand-in")


def no_such_container(ref):
    return DockerError(f"Error response from daemon: No such container: {ref}")
