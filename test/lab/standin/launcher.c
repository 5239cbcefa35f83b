/*
 * STAND-IN launcher — a TEST FIXTURE of k8s-master-install, NOT Kubernetes.
 *
 * The lab's kube-apiserver, kube-controller-manager and kube-scheduler are Python stand-ins, but the
 * tool accepts only ELF x86-64 executables for them, as the real release ships. Each fixture binary is
 * this launcher followed by a zip archive (a Python zipapp: __main__.py is the stand-in, and at real
 * size a padding member with the compressibility of a Go binary). The launcher runs python3 on its
 * own file: zipimport finds the archive at the end and ignores what precedes it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n < 0) {
		fprintf(stderr, "stand-in launcher: readlink /proc/self/exe: %s\n", strerror(errno));
		return 127;
	}
	self[n] = '\0';
	char *args[argc + 2];
	args[0] = "python3";
	args[1] = self;
	for (int i = 1; i < argc; i++) {
		args[i + 1] = argv[i];
	}
	args[argc + 1] = NULL;
	execv("/usr/bin/python3", args);
	fprintf(stderr, "stand-in launcher: exec /usr/bin/python3: %s\n", strerror(errno));
	return 127;
}
