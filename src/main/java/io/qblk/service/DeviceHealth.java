package io.qblk.service;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;
import java.util.Map;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Liveness;
import org.eclipse.microprofile.health.Readiness;

/**
 * {@code /q/health}: the service is live while it answers; ready when every device serves, its
 * backing file exists and every NBD listener accepts connections (not while it backs off from
 * EMFILE/ENFILE).
 */
public class DeviceHealth {

    @Liveness
    @ApplicationScoped
    public static class Live implements HealthCheck {
        @Override
        public HealthCheckResponse call() {
            return HealthCheckResponse.up("qblk");
        }
    }

    @Readiness
    @ApplicationScoped
    public static class Ready implements HealthCheck {
        @Inject DeviceManager devices;
        @Inject NbdFrontend nbd;

        @Override
        public HealthCheckResponse call() {
            Map<String, String> problems = new java.util.TreeMap<>(devices.problems());
            problems.putAll(nbd.listenerProblems());
            HealthCheckResponseBuilder b = HealthCheckResponse.named("devices");
            boolean up = true;
            for (var e : problems.entrySet()) {
                b.withData(e.getKey(), e.getValue());
                if (!e.getValue().equals("UP")) up = false;
            }
            return b.status(up).build();
        }
    }
}
