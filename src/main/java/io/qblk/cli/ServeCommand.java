package io.qblk.cli;

import io.qblk.service.DeviceManager;
import io.qblk.service.ShutdownSignals;
import io.quarkus.runtime.LaunchMode;
import io.quarkus.runtime.Quarkus;
import jakarta.inject.Inject;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/**
 * {@code qblk serve}: runs the service (REST API, configured devices) until SIGINT/SIGTERM; a second
 * signal during the graceful shutdown forces exit ({@link ShutdownSignals}).
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Run the qblk service: REST API on quarkus.http.host:port (default 127.0.0.1:8420),",
                "devices from qblk.devices.* (or the default ./data/default.qcow2 over NBD on 127.0.0.1:10809).",
                "Configuration: application.properties, -Dkey=value or QBLK_* environment variables.",
                "SIGTERM/SIGINT: graceful shutdown (drain, flush, close; exit status 143/130).",
                "A second SIGTERM/SIGINT during it forces exit (status " + ShutdownSignals.FORCED_EXIT_CODE + "; images are repaired on next open)."})
public class ServeCommand implements Callable<Integer> {
    @Inject DeviceManager devices;

    @Override
    public Integer call() {
        if (!DeviceManager.serving()) {
            System.err.println("qblk: serve needs the HTTP server, but quarkus.http.host-enabled is false");
            return 1;
        }
        // Dev mode and tests keep Quarkus' own signal handling (dev mode restarts the app in the same JVM).
        if (LaunchMode.current() == LaunchMode.NORMAL) ShutdownSignals.install();
        // Devices were started by DeviceManager at start-up; list them so the operator sees what runs.
        devices.list().forEach(d -> System.err.println("qblk: device " + d.name() + " " + d.state() + " at " + String.join(", ", d.endpoints())));
        Quarkus.waitForExit();
        return 0;
    }
}
