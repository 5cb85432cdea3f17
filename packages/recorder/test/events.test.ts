import { expect } from 'chai';
import { canonicalJson } from '@trailmark/tlog';
import { capString } from '../src/index.js';

describe('capString (long fields in access events)', () => {
  it('keeps a string up to the cap as it is and marks a cut one', () => {
    expect(capString('abc', 3)).to.equal('abc');
    expect(capString('abcd', 3)).to.equal('abc…');
  });

  it('never cuts a surrogate pair in half, so the event stays loggable', () => {
    // an emoji straddling the cap: a plain slice would leave its high surrogate alone at the end
    const s = 'a'.repeat(4095) + '😀' + 'tail';
    const capped = capString(s);
    expect(capped).to.equal('a'.repeat(4095) + '…');
    expect(() => canonicalJson({ path: capped })).to.not.throw();
    // a pair that fits whole is kept whole
    expect(capString('a'.repeat(4094) + '😀' + 'tail')).to.equal('a'.repeat(4094) + '😀…');
  });
});
