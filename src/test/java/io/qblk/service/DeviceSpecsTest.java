package io.qblk.service;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** Cross-field rules of device definitions, and sizes. */
class DeviceSpecsTest {
    static DeviceSpec build(DeviceSpecs.Draft d) throws DeviceSpecs.Invalid {
        return DeviceSpecs.build(d, "qblk.devices." + d.name() + ".", "127.0.0.1:10809", Path::of);
    }

    @Test
    void defaultsAndNullTarget() throws Exception {
        DeviceSpec s = build(new DeviceSpecs.Draft("d1", "/x.qcow2", null, null, null, null, null, null, null));
        assertEquals(TargetType.QCOW2, s.target());
        assertEquals(FrontendType.NBD, s.frontend());
        assertEquals("127.0.0.1:10809", s.nbdAddress());
        assertEquals(0, s.createSize());
        DeviceSpec n = build(new DeviceSpecs.Draft("n", null, "null", "nbd", 2, 64, true, "[::1]:0", "1G"));
        assertEquals(1L << 30, n.createSize());
        assertNull(n.image());
    }

    @Test
    void everyProblemIsReportedWithItsKey() {
        var e = assertThrows(DeviceSpecs.Invalid.class, () -> build(
                new DeviceSpecs.Draft("x", null, "qcow2", "ublk", 65, 0, null, "127.0.0.1:99999", "1000")));
        var fields = e.errors().stream().map(ApiException.FieldError::field).toList();
        assertEquals(java.util.List.of("qblk.devices.x.queues", "qblk.devices.x.depth", "qblk.devices.x.nbd-address",
                "qblk.devices.x.create-size", "qblk.devices.x.image"), fields);
        var json = assertThrows(DeviceSpecs.Invalid.class, () -> DeviceSpecs.build(
                new DeviceSpecs.Draft("ok", null, "null", null, null, null, null, "a:1", "3"), "", "h:1", Path::of));
        assertEquals("createSize", json.errors().getFirst().field());
        var ublkAddress = assertThrows(DeviceSpecs.Invalid.class, () -> build(
                new DeviceSpecs.Draft("u", "/i", null, "ublk", null, null, null, "h:1", null)));
        assertTrue(ublkAddress.getMessage().contains("only applies to the nbd frontend"));
    }

    @Test
    void sizes() {
        assertEquals(512, Sizes.parse("512"));
        assertEquals(8L << 30, Sizes.parse("8G"));
        assertEquals(8L << 30, Sizes.parse("8GiB"));
        assertEquals(3L << 20, Sizes.parse("3m"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parse("8X"));
        assertThrows(IllegalArgumentException.class, () -> Sizes.parse("99999999999P"));
        assertEquals("8 GiB", Sizes.format(8L << 30));
        assertEquals("1000 B", Sizes.format(1000));
    }
}
