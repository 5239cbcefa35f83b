/*
 * launcher.c — a TEST FIXTURE of k8s-master-install (test/lab only), NOT Kubernetes.
 *
 * k8s-master-install takes only ELF x86-64 executables from a server tarball, as the real
 * release ships. The lab's stand-ins are Python, so test/lab/make-tarball.sh makes each binary
 * this launcher (compiled static) with the stand-in appended as a zip holding __main__.py:
 * Python runs a zip archive given as its script, whatever comes before the zip. The launcher
 * execs /usr/bin/python3 on its own file, so the process is what a "#!/usr/bin/python3" script
 * would be: same PID (systemd's MainPID, sd_notify), same /proc/PID/cmdline
 * ("/usr/bin/python3 /opt/k8s/bin/kube-apiserver --flag ..."), same exit status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
	char self[4096];
	ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
	if (length < 0) {
		perror("k8smi lab launcher: readlink /proc/self/exe");
		return 127;
	}

	self[length] = '\0';
	char **args = calloc((size_t)argc + 2, sizeof *args);
	if (args == NULL) {
		perror("k8smi lab launcher");
		return 127;
	}

	args[0] = "/usr/bin/python3";
	args[1] = self;
	for (int index = 1; index < argc; index++) {
		args[index + 1] = argv[index];
	}

	execv(args[0], args);
	perror("k8smi lab launcher: exec /usr/bin/python3");
	return 127;
}
