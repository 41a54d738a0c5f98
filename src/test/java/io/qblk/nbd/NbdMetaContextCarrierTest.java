package io.qblk.nbd;

/** {@link NbdMetaContextTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdMetaContextCarrierTest extends NbdMetaContextTest {
    @Override
    NbdServer.Options variant(NbdServer.Options o) {
        return o.withCarrier(true);
    }

    @Override
    io.qblk.target.FileIo fileIo() {
        return io.qblk.target.FileIo.CALLER_RING;
    }
}
