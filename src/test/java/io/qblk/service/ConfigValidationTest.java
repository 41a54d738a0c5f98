package io.qblk.service;

import static org.junit.jupiter.api.Assertions.*;

import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.quarkus.test.junit.main.Launch;
import io.quarkus.test.junit.main.LaunchResult;
import io.quarkus.test.junit.main.QuarkusMainTest;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** {@code qblk serve} with bad qblk.* configuration stops at start-up with one message per bad key. */
@QuarkusMainTest
@TestProfile(ConfigValidationTest.BadConfig.class)
class ConfigValidationTest {

    public static class BadConfig implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of(
                    "qblk.devices.db.image", "db.qcow2",
                    "qblk.devices.db.target", "vhd",
                    "qblk.devices.db.queues", "0",
                    "qblk.devices.web.depth", "99999",
                    "qblk.devices.web.nbd-address", "nowhere",
                    "qblk.devices.web.create-size", "huge");
        }
    }

    @Test
    @Launch(value = {"serve"}, exitCode = 1)
    void everyBadKeyIsReported(LaunchResult result) {
        String out = result.getOutput() + result.getErrorOutput();
        assertTrue(out.contains("qblk.devices.db.target"), out);
        assertTrue(out.contains("qblk.devices.db.queues"), out);
        assertTrue(out.contains("qblk.devices.web.depth"), out);
        assertTrue(out.contains("qblk.devices.web.nbd-address"), out);
        assertTrue(out.contains("qblk.devices.web.create-size"), out);
    }
}
