package io.qblk.nbd;

/** {@link NbdMetaContextTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdMetaContextCarrierTest extends NbdMetaContextTest implements NbdVariant.OnCarrier {
}
